"""`minicloud sandbox info|pay|login`: registered into the `minicloud` CLI."""

from __future__ import annotations

import argparse
import json

from ..sandbox import client
from .parsing import add_verb, verb


def _cloud(args: argparse.Namespace):
    from ..cloud import Cloud

    return Cloud(args.workspace)


def cmd_info(args: argparse.Namespace) -> int:
    info = client.sandbox_info(_cloud(args), args.env)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        print("\n".join(f"{k:{width}}  {v}" for k, v in info.items()))
    return 0


def cmd_pay(args: argparse.Namespace) -> int:
    trade = client.pay(_cloud(args), args.env, args.out_trade_no)
    if args.json:
        print(json.dumps(trade, indent=2, ensure_ascii=False))
    else:
        print(f"{trade['out_trade_no']} ({trade['trade_no']}): {trade['status']}, {trade['total_amount']} yuan")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    code = client.login(_cloud(args), args.env, args.user)
    if args.json:
        print(json.dumps(code, indent=2))
    else:
        print(code["auth_code"])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sandbox = add_verb(sub, "sandbox", "the env's sandbox open platform")
    verbs = sandbox.add_subparsers(dest="sandbox_verb", required=True, metavar="VERB")
    verb(verbs, "info", cmd_info, "app id, gateway, endpoint and key files to point your code at")
    pay = verb(verbs, "pay", cmd_pay, "simulate the buyer paying a trade (WAIT_BUYER_PAY → TRADE_SUCCESS)")
    pay.add_argument("out_trade_no", metavar="OUT_TRADE_NO")
    login = verb(verbs, "login", cmd_login, "a test member's auth code (what my.getAuthCode gives a mini-program; "
                                            "single use, 5 minutes), for the data API's auth/session")
    login.add_argument("--user", required=True, metavar="USER_ID", help="the member's user id, 2088 and 12 digits")
