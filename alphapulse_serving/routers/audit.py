"""Re-deriving a decision: its audit packet, from this process or from the audit archive."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException
from starlette.responses import Response

from alphapulse_contract.predictors import SourceUnreachable
from alphapulse_serving.dependencies import Auditing
from alphapulse_serving.responses import ERRORS, json_response
from alphapulse_serving.schemas import AuditPacket, ErrorResponse

router = APIRouter()


@router.get(
    "/audit/{decision_id}",
    response_model=AuditPacket,
    responses={
        404: {"model": ErrorResponse},
        503: {"model": ErrorResponse, "description": "the packet is not here and the audit archive is down"},
    }
    | ERRORS,
)
async def audit_packet(decision_id: str, caller: Auditing) -> Response:
    """Everything needed to re-derive one decision: request, exact features, model version and sha256, output.
    Recent packets come from this process; older ones, or another pod's, from the audit archive."""
    if len(decision_id) != 32 or any(c not in "0123456789abcdef" for c in decision_id):
        raise HTTPException(404, detail="decision ids are 32 lowercase hex characters")
    audit = caller.services.audit
    found = audit.get(decision_id)
    if found is None:
        try:
            found = await asyncio.to_thread(audit.get_archived, decision_id)
        except SourceUnreachable as exc:
            raise HTTPException(
                503,
                detail=f"decision {decision_id} is not held by this process and the {exc.label} is unreachable: {exc}",
                headers={"Retry-After": "30"},
            ) from None
    if found is None:
        raise HTTPException(404, detail=f"no decision {decision_id} here or in {audit.archive_uri}")
    return json_response(found)
