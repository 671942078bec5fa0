"""``/api/v1/users``: accounts and their roles (admins only). The same operations are on the
command line as ``telemetry users``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from api.schemas import Account, AccountCreate, AccountCreated, AccountUpdate, TokenRevocation
from telemetry.accounts import service as accounts
from telemetry.accounts.model import NAME_PATTERN
from telemetry.web import AdminDep, PoolDep, error_responses

__all__ = ["router"]

router = APIRouter(prefix="/users", tags=["accounts"])

AccountName = Annotated[str, Path(pattern=NAME_PATTERN)]


@router.get("", response_model=list[Account], responses=error_responses(403))
async def list_users(pool: PoolDep, principal: AdminDep) -> list[Account]:
    """Every account by name, with its role, whether it is disabled and its live tokens."""
    return [Account.model_validate(r) for r in await accounts.list_accounts(pool)]


@router.post(
    "",
    response_model=AccountCreated,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 403, 409),
)
async def add_user(pool: PoolDep, principal: AdminDep, body: AccountCreate) -> AccountCreated:
    """Add an account; without ``password`` one is generated and answered once (``password``).
    409 if the name is taken."""
    row, generated = await accounts.add_account(
        pool, principal, name=body.name, role=body.role, password=body.password
    )
    return AccountCreated.model_validate({**row, "password": generated})


@router.patch("/{name}", response_model=Account, responses=error_responses(400, 403, 404, 409))
async def change_user(
    pool: PoolDep, principal: AdminDep, name: AccountName, body: AccountUpdate
) -> Account:
    """Change an account's role and / or disable (revoking its tokens) or enable it. 409 when
    that would leave no enabled admin."""
    row = await accounts.change_account(
        pool, principal, name, role=body.role, disabled=body.disabled
    )
    return Account.model_validate(row)


@router.post(
    "/{name}/revoke-tokens",
    response_model=TokenRevocation,
    responses=error_responses(403, 404),
)
async def revoke_user_tokens(
    pool: PoolDep, principal: AdminDep, name: AccountName
) -> TokenRevocation:
    """Revoke every live token of the account: it must log in again."""
    return TokenRevocation(revoked=await accounts.revoke_tokens(pool, principal, name))
