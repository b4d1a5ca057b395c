"""The C extensions; everything else is in pyproject.toml.

Both are optional: without a compiler (or OpenSSL's headers for the first) the install
goes on. hashquarry.chain.hashing then uses hashlib (slower per share, same results) and
hashquarry.stratum.fanout the transports' own writes (slower broadcasts, same bytes).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "hashquarry.chain._sha256d",
            ["src/hashquarry/chain/_sha256d.c"],
            libraries=["crypto"],
            optional=True,
        ),
        Extension(
            "hashquarry.stratum._fanout",
            ["src/hashquarry/stratum/_fanout.c"],
            optional=True,
        ),
    ]
)
