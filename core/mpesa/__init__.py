"""M-Pesa Daraja integration: the async client, the STK callback parser, the result codes."""

from core.mpesa.callback import StkCallback, parse_stk_callback
from core.mpesa.client import (
    ConnectivityResult,
    DarajaClient,
    StkPushAccepted,
    StkQueryResult,
    make_ssl_context,
)
from core.mpesa.errors import (
    DarajaAuthFailed,
    DarajaError,
    DarajaMerchantNotFound,
    DarajaOAuthError,
    DarajaOutcomeUnknown,
    DarajaRejected,
    DarajaSubscriberBusy,
    DarajaUnavailable,
    DarajaWrongCredentials,
    InvalidCallback,
    StkRequestInvalid,
)
from core.mpesa.redact import redact_checkout_id
from core.mpesa.result_codes import ResultInfo, describe_result, normalise_result_code
from core.mpesa.stk_request import (
    DEFAULT_ACCOUNT_REFERENCE,
    safe_account_reference,
    safe_transaction_desc,
)

__all__ = [
    "DEFAULT_ACCOUNT_REFERENCE",
    "ConnectivityResult",
    "DarajaAuthFailed",
    "DarajaClient",
    "DarajaError",
    "DarajaMerchantNotFound",
    "DarajaOAuthError",
    "DarajaOutcomeUnknown",
    "DarajaRejected",
    "DarajaSubscriberBusy",
    "DarajaUnavailable",
    "DarajaWrongCredentials",
    "InvalidCallback",
    "ResultInfo",
    "StkCallback",
    "StkPushAccepted",
    "StkQueryResult",
    "StkRequestInvalid",
    "describe_result",
    "make_ssl_context",
    "normalise_result_code",
    "parse_stk_callback",
    "redact_checkout_id",
    "safe_account_reference",
    "safe_transaction_desc",
]
