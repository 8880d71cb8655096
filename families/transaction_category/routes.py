"""Admin routes of the transaction-categorisation corrections: list a model's rules, revert one.

``GET /admin/models/{name}/corrections`` lists the rules (``?all=true`` also the reverted ones);
``DELETE /admin/models/{name}/corrections?merchant=KEY`` reverts the rule of one merchant (its
normalised description, as answers and the list show it). A reverted rule stops deciding in every
worker within the rules' poll interval, and its corrections no longer go into training; reverting it
again is a no-op (200, the same version, ``changed: false``); a later correction of that merchant
makes it active again. Conflict policy: the latest correction wins.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from serving.errors import StoreUnavailable, UnknownModel, UnknownPrediction
from serving.http_errors import ErrorBody
from serving.state import ServingState, require_admin_key, state_of

router = APIRouter()
FAMILY = "transaction-category"


class NoSuchRule(UnknownPrediction):
    """The model has no correction rule for that merchant."""


class RuleOut(BaseModel):
    merchant: str = Field(description="the normalised description the rule is keyed on")
    category: str
    corrections: int
    active: bool
    version: int
    created_at: str
    updated_at: str


class RevertOut(RuleOut):
    changed: bool = Field(description="False when the rule was reverted already: nothing changed (same version)")
    detail: str = Field(description="what the revert did, in a sentence")


class RulesOut(BaseModel):
    model: str
    policy: str = Field(description="how conflicting corrections of one merchant are resolved")
    rules: list[RuleOut]


POLICY = "latest correction wins (every correction is kept; the rule counts them)"


def _engine(state: ServingState, name: str) -> Any:
    model = state.holder.current(name)
    if name not in state.holder.names:
        raise UnknownModel(f"model '{name}' is not served here; served: {', '.join(state.holder.names)}")
    if model is not None and model.family != FAMILY:
        raise UnknownModel(f"model '{name}' is a {model.family} model; corrections are for {FAMILY} models")
    return state.engine


def _list(state: ServingState, name: str, include_reverted: bool) -> RulesOut:
    import sqlalchemy as sa

    from families.transaction_category import tables
    from families.transaction_category.corrections import _rule

    engine = _engine(state, name)
    r = tables.category_rules.c
    q = sa.select(tables.category_rules).where(r.model_name == name).order_by(r.updated_at.desc())
    if not include_reverted:
        q = q.where(r.active.is_(True))
    try:
        state.log.tables.ensure()
        with engine.connect() as conn:
            rules = [_rule(row) for row in conn.execute(q)]
    except Exception as exc:
        raise StoreUnavailable("the app database is unreachable; retry later") from exc
    return RulesOut(model=name, policy=POLICY, rules=[RuleOut(**x.as_json()) for x in rules])


def _revert(state: ServingState, name: str, merchant: str) -> RevertOut:
    from families.transaction_category.corrections import revert_rule

    engine = _engine(state, name)
    try:
        state.log.tables.ensure()
        done = revert_rule(engine, name, merchant)
    except Exception as exc:
        raise StoreUnavailable("the app database is unreachable; retry later") from exc
    if done is None:
        raise NoSuchRule(f"model '{name}' has no correction rule for merchant '{merchant}'; GET the list for the keys")
    rule = done.rule
    if done.changed:
        detail = (f"the rule of merchant '{merchant}' is reverted (version {rule.version}): it stops deciding in every "
                  "worker within the rules' poll interval and its corrections leave training")
    else:
        detail = (f"the rule of merchant '{merchant}' was already reverted (version {rule.version}, "
                  f"{rule.updated_at.isoformat()}); nothing changed")
    return RevertOut(**rule.as_json(), changed=done.changed, detail=detail)


@router.get("/admin/models/{name}/corrections", tags=["corrections"], response_model=RulesOut,
            summary="the correction rules of a transaction-category model (admin key)",
            dependencies=[Depends(require_admin_key)],
            responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}})
async def list_rules(request: Request, name: str, all: bool = Query(False, description="include reverted rules")) -> RulesOut:  # noqa: A002
    return await anyio.to_thread.run_sync(_list, state_of(request), name, all)


@router.delete("/admin/models/{name}/corrections", tags=["corrections"], response_model=RevertOut,
               summary="revert the correction rule of one merchant (admin key; a second revert changes nothing)",
               dependencies=[Depends(require_admin_key)],
               responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}})
async def revert(request: Request, name: str,
                 merchant: str = Query(..., min_length=1, max_length=200, description="the rule's merchant key")) -> RevertOut:
    return await anyio.to_thread.run_sync(_revert, state_of(request), name, merchant)
