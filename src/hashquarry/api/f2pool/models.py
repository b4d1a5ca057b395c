"""f2pool v2's messages as pydantic models, with the document's field names and types.

Requests ignore fields they do not know (like a protobuf server) and validate the ones
they do (the scalar types are in `fields`): strings must be JSON strings, int64 fields
integers, doubles finite numbers. Responses use JSON numbers for int64 and double, doubles
of coins for amounts and decimal strings of coins for thresholds, as the document types
them. The document's `XxxEntry repeated` fields (ResultsEntry, LuckyEntry) are protobuf
maps, which JSON renders as objects: `{"alice": "true"}`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from hashquarry.api.f2pool.fields import Address, Amount, Currency, Double, Int32, Int64, Name


class Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Response(BaseModel):
    pass


# -- account management ------------------------------------------------------------


class ReadOnlyPage(Response):
    key: str = Field(description="/mining-user-{currency}/{key} is the URI of the page")
    permissions: str = Field(description="comma list: 1 hashrate and workers, 2 revenue "
                             "with payments, 3 revenue without payments")  # fmt: skip
    page_name: str


class Wallet(Response):
    currency: str
    address: str
    threshold: str = Field(description="Payout threshold in coins")


class MiningUserInfo(Response):
    mining_user_name: str
    pages: list[ReadOnlyPage]
    wallets: list[Wallet]
    description: str


class MiningUserList(Response):
    mining_user_list: list[MiningUserInfo]


class MiningUserReq(Request):
    mining_user_name: Name


class MiningUserAddReq(Request):
    mining_user_name: Annotated[
        str,
        Field(max_length=64, description="2-15 lowercase letters or digits, from a letter"),
    ]
    description: Annotated[str, Field(max_length=256)] = ""


class WalletIn(Request):
    currency: Currency
    address: Address
    threshold: Amount | None = None


class WalletParams(Request):
    mining_user_name: Name
    wallets: Annotated[list[WalletIn], Field(min_length=1, max_length=32)]


class WalletUpdateReq(Request):
    params: Annotated[list[WalletParams], Field(min_length=1, max_length=100)]


class WalletResp(Response):
    currency: str
    address: str
    result: str = Field(description="true/false")
    msg: str


class MiningUserWalletResp(Response):
    mining_user_name: str
    wallet_result: list[WalletResp]


class WalletUpdateResp(Response):
    results: dict[str, MiningUserWalletResp] = Field(description="mining user -> result")


class PageAddReq(Request):
    mining_user_name: Name
    page_name: Annotated[str, Field(max_length=64)] = ""
    permissions: Annotated[str, Field(max_length=16, description="comma list of 1, 2, 3")]


class PageAddResp(Response):
    mining_user_name: str
    page: ReadOnlyPage


class PageDeleteReq(Request):
    mining_user_name: Name
    key: Annotated[str, Field(max_length=64)]


class MiningUserNameResp(Response):
    mining_user_name: str


class WithdrawReq(Request):
    mining_user_name: Name
    currency: Currency


class WithdrawResp(Response):
    paid_time: int = Field(description="Payment timestamp")


class PaymentReq(Request):
    currency: Currency
    mining_user_names: Annotated[list[Name], Field(min_length=1, max_length=1000)]


class ResultsResp(Response):
    results: dict[str, str] = Field(description="mining user -> 'true'")


class ThresholdReq(Request):
    mining_user_name: Name
    currency: Currency
    threshold: Amount


class ThresholdValueReq(Request):
    mining_user_name: Name
    currency: Currency
    threshold: Amount | None = Field(
        None, description="the new threshold in coins; without it, the current one is returned"
    )


class ThresholdResp(Response):
    threshold: str


# -- assets ---------------------------------------------------------------------------


class UserMiningReq(Request):
    mining_user_name: Name | None = None
    address: Address | None = None
    currency: Currency


class BalanceInfo(Response):
    balance: float
    immature_balance: float
    paid: float
    total_income: float
    yesterday_income: float
    estimated_today_income: float


class BalanceResp(Response):
    balance_info: BalanceInfo


class MiningExtra(Response):
    mining_date: int
    settle_date: int
    pps: float
    pps_fee_rate: float
    tx_fee: float
    tx_fee_rate: float
    hash_rate: float


class PayoutExtra(Response):
    value: float
    address: str
    tx_id: str
    paid_time: int
    wallet_type: str
    tip: float


class TransactionItem(Response):
    id: int
    type: str
    changed_balance: float
    created_at: int
    mining_extra: MiningExtra | None = None
    payout_extra: PayoutExtra | None = None


class TransactionsReq(UserMiningReq):
    type: Annotated[str, Field(max_length=256)] | None = None
    start_time: Int64 | None = None
    end_time: Int64 | None = None


class TransactionsResp(Response):
    transactions: list[TransactionItem]


class SettleModeReq(Request):
    currency: Currency
    mode: Annotated[str, Field(max_length=16)]
    mining_user_name: Name
    activated_at: Int64 | None = None


class SettleModeResp(Response):
    mode: str
    activated_at: int


# -- hashrate ---------------------------------------------------------------------------


class WorkerStatus(IntEnum):
    ONLINE = 0
    OFFLINE = 1
    INVALID = 2  # shares arrive, but at least half of the last hour's are invalid


class HashRateInfo(Response):
    name: str
    hash_rate: float
    h1_hash_rate: float
    h24_hash_rate: float
    h1_stale_hash_rate: float
    h24_stale_hash_rate: float
    h24_delay_hash_rate: float
    local_hash_rate: float
    h24_local_hash_rate: float


class HashRateInfoResp(Response):
    info: HashRateInfo
    currency: str


class InfoListReq(Request):
    reqs: Annotated[list[UserMiningReq], Field(min_length=1, max_length=100)]


class InfoListResp(Response):
    info: list[HashRateInfo]


class HistoryReq(UserMiningReq):
    interval: Int64 | None = Field(None, description="seconds; a multiple of 600 (default 600)")
    duration: Int64 | None = Field(None, description="seconds back from now; at most 30 days "
                                   "(worker history: 3 days); default 86400")  # fmt: skip
    start_time: Int64 | None = Field(None, description="extension: a range instead of duration")
    end_time: Int64 | None = Field(None, description="extension: with start_time")


class WorkerHistoryReq(HistoryReq):
    worker_name: Annotated[str, Field(max_length=64)]


class MiningHistoryItem(Response):
    timestamp: int
    hash_rate: float
    stale_hash_rate: float
    delay_hash_rate: float
    local_hash_rate: float
    normal_reward: float
    delay_reward: float
    online_miners: int


class HistoryResp(Response):
    history: list[MiningHistoryItem]


class WorkerMiningInfo(Response):
    hash_rate_info: HashRateInfo
    last_share_at: int
    status: WorkerStatus = Field(description="0 online, 1 offline, 2 invalid")
    host: str


class WorkerListResp(Response):
    workers: list[WorkerMiningInfo]


# -- distribution -------------------------------------------------------------------------


class DistInfoReq(Request):
    """Every field but currency and distributor is optional, as in protobuf: an absent
    (or 0) start_date is now, end_date one day after start_date, hash_rate 0."""

    currency: Currency
    distributor: Name
    recipient: Name | None = None
    start_date: Int64 = Field(0, description="Unix seconds; absent or 0: now")
    end_date: Int64 = Field(0, description="Unix seconds; absent or 0: start_date + 1 day")
    hash_rate: Double = Field(0.0, description="H/s wanted (0: none in particular)")


class DistInfoResp(Response):
    current_hash_rate: float
    sold_hash_rate: float
    remaining_hash_rate: float


class DistributorReq(Request):
    currency: Currency
    distributor: Name


class HashRateDistributionOrder(Response):
    id: int
    start_date: int
    end_date: int
    distributor: str
    recipient: str
    hash_rate: float
    terminate_at: int = Field(description="when the order was ended early, otherwise 0")


class OrdersResp(Response):
    orders: list[HashRateDistributionOrder]


class HashRateDistributionSettlement(Response):
    id: int
    order: HashRateDistributionOrder
    hashes: float = Field(description="hashes delivered (not a rate)")
    income: float
    timestamp: int


class SettlementsResp(Response):
    settlements: list[HashRateDistributionSettlement]


class DistributeReq(Request):
    currency: Currency
    distributor: Name
    recipient: Name
    start_date: Int64
    end_date: Int64
    hash_rate: Double


class DistributeResp(Response):
    order: HashRateDistributionOrder


class TerminateReq(Request):
    order_id: Int64


class ReasonResp(Response):
    reason: str


class RevenueDistribution(Response):
    id: str
    currency: str
    distributor: str
    recipient: str
    description: str
    proportion: float


class RevenueInfoReq(Request):
    currency: Currency
    distributor: Name
    recipient: Name | None = None


class RevenueInfoResp(Response):
    data: list[RevenueDistribution]


class RevenueAddReq(Request):
    currency: Currency
    distributor: Name
    recipient: Name
    description: Annotated[str, Field(max_length=256)] = ""
    proportion: Double


class RevenueDeleteReq(Request):
    id: Int64
    distributor: Name


# -- blocks ---------------------------------------------------------------------------------


class Block(Response):
    height: int
    block_hash: str
    base_reward: float
    total_reward: float
    timestamp: int
    settle_timestamp: int = Field(description="when the block matured, 0 until then")


class BlocksPagingReq(Request):
    page: Int32 = Field(0, description="from 1 (0: the first page)")
    pagesize: Int32 = Field(0, description="1-100 (0: 20)")
    currency: Currency


class BlocksDateRangeReq(Request):
    start_time: Int64
    end_time: Int64
    currency: Currency
    page: Int32 = Field(0, description="extension: from 1 (0: the first page)")
    pagesize: Int32 = Field(0, description="extension: 1-1000 (0: 1000)")


class BlocksResp(Response):
    lucky: dict[str, float] = Field(
        description="period (24h, 3d, 7d, 30d, 90d) -> expected work / work done; above 1 is lucky"
    )
    blocklist: list[Block]
    sum: int


class BlocksUserReq(Request):
    currency: Currency
    mining_user_name: Name
    mining_reward: Int64 = Field(0, description="only blocks paying the user at least this "
                                 "many base units (0: all)")  # fmt: skip
    start_time: Int64 | None = None
    end_time: Int64 | None = None


class BlocksUserResp(Response):
    blocklist: list[Block]


class ErrorResp(Response):
    code: int
    msg: str = Field(description="error_type: description")
