"""Per-domain SPF, DKIM and DMARC verdicts for Microsoft 365 mailboxes, over an injected resolver."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype

from m365connect.deliverability.clouds import DEFAULT_CLOUD, MailCloud, mail_cloud
from m365connect.deliverability.dkim import check_dkim
from m365connect.deliverability.dmarc import check_dmarc
from m365connect.deliverability.observer import DnsObserver, LookupOutcome, NoDnsObserver
from m365connect.deliverability.resolver import CappedLRUCache, DnsError, Records, lookup
from m365connect.deliverability.spf import check_spf

# RFC 7208 §4.6.4 suggests at least 20 s for a whole SPF evaluation; DKIM and DMARC need 2 rounds of lookups.
CHECK_BUDGET_SECONDS = 20.0


@dataclass(frozen=True, kw_only=True)
class DomainDeliverability:
    """The SPF, DKIM and DMARC verdicts for one domain, each with a machine-readable reason."""

    spf_correct: bool
    dkim_correct: bool
    dmarc_correct: bool
    spf_reason: str
    dkim_reason: str
    dmarc_reason: str

    @classmethod
    def from_reasons(cls, *, spf: str, dkim: str, dmarc: str) -> DomainDeliverability:
        """The verdicts from the three reasons: a flag is true only when its reason is "ok"."""
        return cls(
            spf_correct=spf == "ok",
            dkim_correct=dkim == "ok",
            dmarc_correct=dmarc == "ok",
            spf_reason=spf,
            dkim_reason=dkim,
            dmarc_reason=dmarc,
        )


def normalize_domain(domain: str) -> str | None:
    """Lowercase, drop one trailing dot, IDNA-encode; None if it is not a valid domain name."""
    try:
        name = dns.name.from_text(domain.strip().lower())  # one trailing dot is allowed, two are not
    except (dns.exception.DNSException, ValueError):
        return None
    return None if name == dns.name.root else name.to_text(omit_final_dot=True)


class DeliverabilityChecker:
    """Checks the SPF, DKIM and DMARC records of mailbox domains over one resolver, built once per service.

    Each call gets a DNS cache of its own (a record fixed since the last request shows at once) and shares
    lookups in flight between the domains it checks.
    """

    def __init__(self, resolver: dns.asyncresolver.Resolver, *, observer: DnsObserver | None = None) -> None:
        self._resolver = resolver
        self._observer: DnsObserver = observer or NoDnsObserver()

    async def check_domain(self, domain: str, *, cloud: str = DEFAULT_CLOUD) -> DomainDeliverability:
        """Check one domain for a tenant of `cloud` (its SPF include and DKIM targets); DNS failures make
        a flag false with reason "dns_error", never raise. ValueError for an unknown cloud."""
        return await _Lookups(self._resolver, self._observer, mail_cloud(cloud)).check_domain(domain)

    async def check_domains(
        self, domains: Iterable[str], *, cloud: str = DEFAULT_CLOUD, concurrency: int = 20
    ) -> dict[str, DomainDeliverability]:
        """Check each distinct domain once for a tenant of `cloud`, at most `concurrency` at a time; keys
        are the inputs as given. The verdicts hold for that cloud only: a call checks one cloud."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        lookups = _Lookups(self._resolver, self._observer, mail_cloud(cloud))
        inputs = list(dict.fromkeys(domains))
        distinct = list(dict.fromkeys(normalize_domain(domain) or domain for domain in inputs))
        semaphore = asyncio.Semaphore(concurrency)

        async def bounded(domain: str) -> DomainDeliverability:
            async with semaphore:
                return await lookups.check_domain(domain)

        results = dict(zip(distinct, await asyncio.gather(*map(bounded, distinct)), strict=True))
        return {domain: results[normalize_domain(domain) or domain] for domain in inputs}


class _Lookups:
    """The DNS lookups of one check for one cloud: a cache of their own and the queries in flight, shared."""

    def __init__(self, resolver: dns.asyncresolver.Resolver, observer: DnsObserver, cloud: MailCloud) -> None:
        self._cloud = cloud
        # A shallow copy, so the cache is this check's and the shared resolver is left as it was.
        self._resolver = copy.copy(resolver)
        self._resolver.cache = CappedLRUCache()
        self._observer = observer
        # Twenty domains checked at once that all include Microsoft's record cause one query for it, not
        # twenty (the cache only helps once the first answer is in).
        self._in_flight: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], _SharedLookup] = {}

    async def check_domain(self, domain: str) -> DomainDeliverability:
        """SPF, DKIM and DMARC of one domain, each within its budget."""
        normalized = normalize_domain(domain)
        if normalized is None:
            invalid = "invalid_domain"
            return DomainDeliverability.from_reasons(spf=invalid, dkim=invalid, dmarc=invalid)
        name = dns.name.from_text(normalized)
        spf, dkim, dmarc = await asyncio.gather(
            _within_budget(check_spf(self._lookup, name, microsoft_include=self._cloud.spf_include)),
            _within_budget(check_dkim(self._lookup, name, pattern=self._cloud.dkim_target)),
            _within_budget(check_dmarc(self._lookup, name)),
        )
        return DomainDeliverability.from_reasons(spf=spf, dkim=dkim, dmarc=dmarc)

    async def _lookup(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Records:
        key = (name, rdtype)
        shared = self._in_flight.get(key)
        if shared is None:
            shared = self._in_flight[key] = _SharedLookup(
                asyncio.ensure_future(self._observed_lookup(name, rdtype))
            )
            shared.task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        shared.waiters += 1
        try:
            # shield: one waiter cancelled (a check over its budget) does not cancel the others' query
            return await asyncio.shield(shared.task)
        finally:
            shared.waiters -= 1
            if shared.waiters == 0 and not shared.task.done():
                shared.task.cancel()  # nobody is left waiting for it

    async def _observed_lookup(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Records:
        started = time.perf_counter()
        try:
            records = await lookup(self._resolver, name, rdtype)
        except DnsError:
            self._observer.looked_up(rdtype.name, "error", time.perf_counter() - started)
            raise
        outcome: LookupOutcome = "nxdomain" if records.nxdomain else "answer" if records.rdatas else "nodata"
        self._observer.looked_up(rdtype.name, outcome, time.perf_counter() - started)
        return records


@dataclass
class _SharedLookup:
    """One query in flight and how many checks wait for it."""

    task: asyncio.Future[Records]
    waiters: int = 0


async def _within_budget(check: Awaitable[str]) -> str:
    """Run a check; one that outlasts the budget is a DNS failure."""
    try:
        async with asyncio.timeout(CHECK_BUDGET_SECONDS):
            return await check
    except TimeoutError:
        return "dns_error"
