"""Stratum V1: jobs, sessions (sans-IO), vardiff, defences and the asyncio server shell."""
