"""Managers' configuration data: partners, prohibited words, feature flags, staff accounts, template versions.

Repositories (session-bound, inside a unit of work) for the admin services, and read-side queries for the
admin pages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.orm import Session

from core.flags import FeatureFlag, FlagScope
from core.states import Role
from db import tables as t
from db.queries import _connected
from db.repositories import catalogue_changed

Bind = Engine | Connection
PARTNER_FIELDS = ("id", "name", "region", "country", "city", "lat", "lon", "print_methods", "capacity_per_hour",
                  "active")


def _flag(row) -> FeatureFlag:
    return FeatureFlag(key=row.key, scope=FlagScope(row.scope), scope_id=row.scope_id, enabled=bool(row.enabled),
                       rollout_percent=int(row.rollout_percent))


class PartnerSettingsRepository:
    """A partner's editable row: capacity per print method, methods, location and active flag."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, partner_id: str, *, lock: bool = False) -> dict[str, Any] | None:
        p = t.partners
        query = select(*(p.c[name] for name in PARTNER_FIELDS)).where(p.c.id == partner_id)
        row = self.session.execute(query.with_for_update() if lock else query).first()
        return None if row is None else dict(row._mapping)

    def update(self, partner_id: str, values: dict[str, Any]) -> None:
        self.session.execute(update(t.partners).where(t.partners.c.id == partner_id).values(**values))


class ProhibitedWordRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def has(self, word: str) -> bool:
        w = t.prohibited_words
        return self.session.scalar(select(func.count()).where(w.c.word == word)) == 1

    def add(self, word: str, *, by: str, at: datetime) -> None:
        self.session.execute(insert(t.prohibited_words).values(word=word, added_by=by, added_at=at))
        catalogue_changed(self.session)

    def remove(self, word: str) -> bool:
        w = t.prohibited_words
        catalogue_changed(self.session)
        return self.session.execute(delete(w).where(w.c.word == word)).rowcount == 1


class FeatureFlagRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def all(self) -> list[FeatureFlag]:
        f = t.feature_flags
        return [_flag(row) for row in self.session.execute(select(f).order_by(f.c.key, f.c.scope, f.c.scope_id))]

    def get(self, key: str, scope: str, scope_id: str) -> FeatureFlag | None:
        f = t.feature_flags
        row = self.session.execute(select(f).where(f.c.key == key, f.c.scope == scope,
                                                   f.c.scope_id == scope_id)).first()
        return None if row is None else _flag(row)

    def put(self, flag: FeatureFlag, *, at: datetime) -> None:
        f = t.feature_flags
        where = (f.c.key == flag.key, f.c.scope == str(flag.scope), f.c.scope_id == flag.scope_id)
        values = {"enabled": flag.enabled, "rollout_percent": int(flag.rollout_percent), "updated_at": at}
        if not self.session.execute(update(f).where(*where).values(**values)).rowcount:
            self.session.execute(insert(f).values(key=flag.key, scope=str(flag.scope), scope_id=flag.scope_id,
                                                  **values))

    def remove(self, key: str, scope: str, scope_id: str) -> bool:
        f = t.feature_flags
        return self.session.execute(delete(f).where(f.c.key == key, f.c.scope == scope,
                                                    f.c.scope_id == scope_id)).rowcount == 1


class StaffRepository:
    """Staff accounts as managers administer them (db.staff handles sign-in bookkeeping)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, username: str, *, lock: bool = False) -> dict[str, Any] | None:
        u = t.staff_users
        query = select(u.c.username, u.c.role, u.c.active).where(u.c.username == username)
        row = self.session.execute(query.with_for_update() if lock else query).first()
        return None if row is None else {"username": row.username, "role": str(row.role), "active": bool(row.active)}

    def add(self, *, username: str, password_hash: str, role: Role, at: datetime) -> None:
        self.session.execute(insert(t.staff_users).values(username=username, password_hash=password_hash, role=role,
                                                          active=True, failed_logins=0, created_at=at))

    def update(self, username: str, **values: Any) -> None:
        self.session.execute(update(t.staff_users).where(t.staff_users.c.username == username).values(**values))

    def active_managers(self) -> list[str]:
        """Enabled manager accounts, locked so two managers demoting each other cannot both succeed."""
        u = t.staff_users
        return list(self.session.scalars(select(u.c.username).where(u.c.role == Role.MANAGER, u.c.active)
                                         .order_by(u.c.username).with_for_update()))


# ---- read side for the admin pages ---------------------------------------------------------------------------


def partners(bind: Bind) -> list[dict[str, Any]]:
    p = t.partners
    with _connected(bind) as conn:
        rows = conn.execute(select(*(p.c[name] for name in PARTNER_FIELDS)).order_by(p.c.id))
        return [dict(row._mapping) for row in rows]


def templates(bind: Bind) -> list[dict[str, Any]]:
    """Each template with its current version and the product that uses it (for the preview silhouette)."""
    tpl, prod = t.templates, t.products
    with _connected(bind) as conn:
        product = {row.template_key: row for row in conn.execute(
            select(prod.c.template_key, prod.c.product_type, prod.c.print_method, prod.c.name))}
        colour = dict(conn.execute(select(prod.c.template_key, func.min(t.variants.c.colour))
                                   .join(t.variants, t.variants.c.product_id == prod.c.id)
                                   .group_by(prod.c.template_key)).all())
        out = []
        for row in conn.execute(select(tpl).order_by(tpl.c.key)):
            used = product.get(row.key)
            out.append({"key": row.key, "print_location": row.print_location, "current_version": row.current_version,
                        "product": used.name if used else "", "product_type": used.product_type if used else "",
                        "print_method": str(used.print_method) if used else "", "colour": colour.get(row.key)})
        return out


def template_versions(bind: Bind, key: str) -> list[dict[str, Any]]:
    """Every version of one template, newest first, with its document."""
    tv = t.template_versions
    with _connected(bind) as conn:
        rows = conn.execute(select(tv.c.version, tv.c.created_at, tv.c.created_by, tv.c.note, tv.c.spec)
                            .where(tv.c.template_key == key).order_by(tv.c.version.desc()))
        return [dict(row._mapping) for row in rows]


def prohibited_words(bind: Bind) -> list[dict[str, Any]]:
    w = t.prohibited_words
    with _connected(bind) as conn:
        return [dict(row._mapping) for row in conn.execute(select(w.c.word, w.c.added_by, w.c.added_at)
                                                           .order_by(w.c.word))]


def feature_flags(bind: Bind) -> list[dict[str, Any]]:
    f = t.feature_flags
    with _connected(bind) as conn:
        return [dict(row._mapping) for row in conn.execute(select(f).order_by(f.c.key, f.c.scope, f.c.scope_id))]


def staff_users(bind: Bind) -> list[dict[str, Any]]:
    u = t.staff_users
    with _connected(bind) as conn:
        rows = conn.execute(select(u.c.username, u.c.role, u.c.active, u.c.created_at, u.c.last_login_at)
                            .order_by(u.c.username))
        return [{**row._mapping, "role": str(row.role)} for row in rows]
