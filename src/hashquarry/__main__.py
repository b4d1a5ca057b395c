from hashquarry.cli.main import app

app()
