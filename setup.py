"""The one C extension (hashquarry.chain._sha256d); everything else is in pyproject.toml.

It is optional: without a compiler or OpenSSL's headers the install goes on and
hashquarry.chain.hashing uses hashlib (slower per share, same results).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "hashquarry.chain._sha256d",
            ["src/hashquarry/chain/_sha256d.c"],
            libraries=["crypto"],
            optional=True,
        )
    ]
)
