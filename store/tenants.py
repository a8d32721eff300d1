"""Tenants and their API keys. Keys are shown once; only their sha256 is kept."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.ids import new_id
from store.models import ApiKey, Tenant, utcnow

KEY_PREFIX = "dqb_"
_DISPLAY_CHARS = 12  # "dqb_" + 8 characters: enough to tell keys apart in a listing


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_tenant(session: Session, *, name: str, max_concurrent_jobs: int | None = None,
                  storage_limit_bytes: int | None = None) -> Tenant:
    tenant = Tenant(id=new_id("ten"), name=name, max_concurrent_jobs=max_concurrent_jobs,
                    storage_limit_bytes=storage_limit_bytes)
    session.add(tenant)
    session.commit()
    return tenant


def get_tenant_by_name(session: Session, *, name: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.name == name))


def get_or_create_tenant(session: Session, *, name: str) -> Tenant:
    return get_tenant_by_name(session, name=name) or create_tenant(session, name=name)


def create_key(session: Session, *, tenant_id: str) -> tuple[ApiKey, str]:
    """A new key for the tenant: the row and the plaintext (which is never stored)."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(id=new_id("key"), tenant_id=tenant_id, key_hash=hash_key(plaintext),
                 prefix=plaintext[:_DISPLAY_CHARS])
    session.add(key)
    session.commit()
    return key, plaintext


def tenant_for_key(session: Session, *, key: str) -> Tenant | None:
    """The tenant owning a valid (unrevoked) key, or None."""
    return session.scalar(
        select(Tenant)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )


def revoke_key(session: Session, *, tenant_id: str, key_id: str) -> bool:
    key = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id))
    if key is None or key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    session.commit()
    return True
