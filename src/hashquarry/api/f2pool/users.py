"""Account management: /v2/mining_user/* (users, wallets, pages, withdrawal, payments,
thresholds). Scopes: manage_accounts for users, wallets and pages; manage_payouts for
withdrawal, pause/resume and thresholds."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from hashquarry.accounts import names
from hashquarry.accounts.errors import AccountsError
from hashquarry.accounts.keys import Scope
from hashquarry.accounts.models import MiningUser, Page
from hashquarry.accounts.pages import format_permissions
from hashquarry.api.context import ApiContext
from hashquarry.api.f2pool import models as f
from hashquarry.api.f2pool.access import (
    Caller,
    check_currency,
    coin_string,
    owned_user,
    parse_coins,
    requires,
)
from hashquarry.api.f2pool.errors import (
    PAYOUT_REFUSED,
    PERMISSION_DENIED,
    UNAVAILABLE,
    F2PoolError,
    invalid,
)


def page_out(page: Page) -> f.ReadOnlyPage:
    return f.ReadOnlyPage(
        key=page.key, permissions=format_permissions(page.permissions), page_name=page.page_name
    )


def user_out(user: MiningUser) -> f.MiningUserInfo:
    return f.MiningUserInfo(
        mining_user_name=user.name,
        pages=[page_out(p) for p in user.pages],
        wallets=[
            f.Wallet(
                currency=w.currency, address=w.address or "", threshold=coin_string(w.threshold)
            )
            for w in user.wallets
        ],
        description=user.description,
    )


def register(r: APIRouter, ctx: ApiContext) -> None:
    accounts = Depends(requires(ctx, Scope.MANAGE_ACCOUNTS))
    payouts = Depends(requires(ctx, Scope.MANAGE_PAYOUTS))

    @r.post("/mining_user/get", summary="Fetch account information")
    async def get(body: f.MiningUserReq, caller: Caller = accounts) -> f.MiningUserInfo:
        name = await owned_user(ctx, caller, body.mining_user_name, "mining_user_name")
        return user_out(await ctx.accounts.get_mining_user(caller.owner, name))

    @r.post("/mining_user/add", summary="Add new mining account")
    async def add(body: f.MiningUserAddReq, caller: Caller = accounts) -> f.MiningUserInfo:
        user = await ctx.accounts.add_mining_user(
            caller.owner, body.mining_user_name, body.description
        )
        return user_out(user)

    @r.post("/mining_user/list", summary="List all mining accounts")
    async def list_users(caller: Caller = accounts) -> f.MiningUserList:
        users = await ctx.accounts.list_mining_users(caller.owner)
        return f.MiningUserList(mining_user_list=[user_out(u) for u in users])

    @r.post("/mining_user/wallet/update", summary="Modify wallet address")
    async def wallet_update(
        body: f.WalletUpdateReq, caller: Caller = accounts
    ) -> f.WalletUpdateResp:
        # All or nothing: every user must be the owner's and every wallet valid before the
        # first one is written, so a refused request changes nothing.
        owned = {u.name for u in await ctx.accounts.list_mining_users(caller.owner)}
        plan: list[tuple[str, str, str, int | None]] = []
        for i, params in enumerate(body.params):
            where = f"params[{i}]"
            user = params.mining_user_name
            problem = names.mining_user_name_problem(user)
            if problem is not None:
                raise invalid(f"{where}.mining_user_name", f"{user!r} {problem}")
            if user not in owned:
                raise F2PoolError(
                    PERMISSION_DENIED,
                    f"{where}.mining_user_name: mining user {user!r} not found among this "
                    "API key's mining users",
                )
            for j, wallet in enumerate(params.wallets):
                at = f"{where}.wallets[{j}]"
                currency = check_currency(ctx, wallet.currency, f"{at}.currency")
                try:
                    address = names.normalize_address(
                        currency, wallet.address, ctx.accounts.networks
                    )
                except AccountsError as exc:
                    raise invalid(f"{at}.address", exc.reason) from None
                threshold = None
                if wallet.threshold not in (None, ""):
                    threshold = parse_coins(wallet.threshold, f"{at}.threshold")
                    _check_threshold(ctx, threshold, f"{at}.threshold")
                plan.append((user, currency, address, threshold))
        results: dict[str, f.MiningUserWalletResp] = {}
        for user, currency, address, threshold in plan:
            stored = await ctx.accounts.update_wallet(
                caller.owner, user, currency, address, threshold
            )
            out = results.setdefault(
                user, f.MiningUserWalletResp(mining_user_name=user, wallet_result=[])
            )
            out.wallet_result.append(
                f.WalletResp(currency=currency, address=stored.address or "", result="true", msg="")
            )
        return f.WalletUpdateResp(results=results)

    @r.post("/mining_user/read_only_page/add", summary="Create read-only page")
    async def page_add(body: f.PageAddReq, caller: Caller = accounts) -> f.PageAddResp:
        name = await owned_user(ctx, caller, body.mining_user_name, "mining_user_name")
        page = await ctx.accounts.add_page(caller.owner, name, body.page_name, body.permissions)
        return f.PageAddResp(mining_user_name=name, page=page_out(page))

    @r.post("/mining_user/read_only_page/delete", summary="Delete read-only page")
    async def page_delete(body: f.PageDeleteReq, caller: Caller = accounts) -> f.MiningUserNameResp:
        name = await owned_user(ctx, caller, body.mining_user_name, "mining_user_name")
        await ctx.accounts.delete_page(caller.owner, name, body.key)
        return f.MiningUserNameResp(mining_user_name=name)

    @r.post("/mining_user/balance/withdraw", summary="Manual withdrawal")
    async def withdraw(body: f.WithdrawReq, caller: Caller = payouts) -> f.WithdrawResp:
        name = await owned_user(ctx, caller, body.mining_user_name, "mining_user_name")
        check_currency(ctx, body.currency)
        if ctx.payouts is None:
            raise F2PoolError(UNAVAILABLE, "payouts are not enabled on this pool")
        now = ctx.clock()
        result = await ctx.payouts.withdraw([name], now=now)
        if result.status == "failed":
            raise F2PoolError(
                PAYOUT_REFUSED,
                f"the wallet refused the payment ({result.error}); nothing was debited",
            )
        if result.status != "sent":
            raise F2PoolError(
                UNAVAILABLE,
                f"the wallet did not answer ({result.error}); the payment is recorded and will "
                "be reconciled with the wallet, so it is made exactly once",
            )
        return f.WithdrawResp(paid_time=int(now))

    async def set_paused(body: f.PaymentReq, caller: Caller, paused: bool) -> f.ResultsResp:
        check_currency(ctx, body.currency)
        change = ctx.accounts.pause_payments if paused else ctx.accounts.resume_payments
        users = await change(caller.owner, list(body.mining_user_names), body.currency)
        return f.ResultsResp(results=dict.fromkeys(users, "true"))

    @r.post("/mining_user/payment/pause", summary="Pause payment")
    async def pause(body: f.PaymentReq, caller: Caller = payouts) -> f.ResultsResp:
        return await set_paused(body, caller, True)

    @r.post("/mining_user/payment/resume", summary="Resume payment")
    async def resume(body: f.PaymentReq, caller: Caller = payouts) -> f.ResultsResp:
        return await set_paused(body, caller, False)

    async def set_threshold(
        caller: Caller, user: str, currency: str, value: str | None
    ) -> f.ThresholdResp:
        name = await owned_user(ctx, caller, user, "mining_user_name")
        check_currency(ctx, currency)
        if value is None:
            current = await ctx.accounts.get_mining_user(caller.owner, name)
            found = next((w for w in current.wallets if w.currency == currency), None)
            units = ctx.accounts.default_threshold if found is None else found.threshold
            return f.ThresholdResp(threshold=coin_string(units))
        units = parse_coins(value, "threshold")
        _check_threshold(ctx, units, "threshold")
        stored = await ctx.accounts.update_threshold(caller.owner, name, currency, units)
        return f.ThresholdResp(threshold=coin_string(stored))

    @r.post("/mining_user/threshold/update", summary="Change payout threshold")
    async def threshold_update(body: f.ThresholdReq, caller: Caller = payouts) -> f.ThresholdResp:
        return await set_threshold(caller, body.mining_user_name, body.currency, body.threshold)

    @r.post(
        "/mining_user/threshold/update_value",
        summary="Change payout threshold value",
        description="With `threshold` (decimal coins) it sets the threshold like "
        "threshold/update; without it, it returns the threshold in force.",
    )
    async def threshold_update_value(
        body: f.ThresholdValueReq, caller: Caller = payouts
    ) -> f.ThresholdResp:
        value = body.threshold or None
        return await set_threshold(caller, body.mining_user_name, body.currency, value)


def _check_threshold(ctx: ApiContext, units: int, field: str) -> None:
    try:
        names.check_threshold(units, ctx.accounts.min_threshold)
    except AccountsError as exc:
        raise invalid(field, exc.reason.replace(" base units", " base units of the coin")) from None
