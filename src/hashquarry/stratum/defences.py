"""Per-IP defences: connection caps and temporary bans for garbage senders. Pure, time passed in."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BanRules:
    min_count: int = 20
    invalid_ratio: float = 0.5
    ban_seconds: float = 600.0
    max_connections_per_ip: int = 1000


@dataclass(slots=True)
class _IpRecord:
    judged: int = 0
    bad: int = 0
    connections: int = 0
    banned_until: float = 0.0


@dataclass
class Defences:
    rules: BanRules
    _ips: dict[str, _IpRecord] = field(default_factory=dict)

    def _rec(self, ip: str) -> _IpRecord:
        rec = self._ips.get(ip)
        if rec is None:
            rec = self._ips[ip] = _IpRecord()
        return rec

    def is_banned(self, ip: str, now: float) -> bool:
        rec = self._ips.get(ip)
        return rec is not None and rec.banned_until > now

    def admit(self, ip: str, now: float) -> str | None:
        """None if a new connection from `ip` may proceed, else why not."""
        rec = self._rec(ip)
        if rec.banned_until > now:
            return f"banned for {rec.banned_until - now:.0f} more seconds"
        if rec.connections >= self.rules.max_connections_per_ip:
            return f"too many connections from {ip} (limit {self.rules.max_connections_per_ip})"
        rec.connections += 1
        return None

    def release(self, ip: str) -> None:
        rec = self._ips.get(ip)
        if rec is not None and rec.connections > 0:
            rec.connections -= 1

    def judge(self, ip: str, bad: bool, now: float) -> bool:
        """Record one share or message; True when this IP has just been banned."""
        rec = self._rec(ip)
        rec.judged += 1
        if bad:
            rec.bad += 1
        if rec.judged >= self.rules.min_count and rec.bad >= self.rules.invalid_ratio * rec.judged:
            rec.banned_until = now + self.rules.ban_seconds
            rec.judged = rec.bad = 0
            return True
        # Forget good history slowly so an old clean record cannot hide a new flood.
        if rec.judged >= 10 * self.rules.min_count:
            rec.judged //= 2
            rec.bad //= 2
        return False

    def ban(self, ip: str, now: float) -> None:
        self._rec(ip).banned_until = now + self.rules.ban_seconds

    def sweep(self, now: float) -> None:
        """Drop records of IPs with nothing left to remember."""
        for ip in [
            ip
            for ip, r in self._ips.items()
            if r.connections == 0 and r.banned_until <= now and r.bad == 0
        ]:
            del self._ips[ip]
