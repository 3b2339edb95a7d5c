"""Managers' admin: partners, templates, prohibited words, QA rules, feature flags and staff accounts.

Every change is validated with a sentence a manager can act on, and audited with its before and after in the
same transaction. Production rules (priority weights, batching) are edited through core.services.batches.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import asdict, fields, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping

from core.catalogue import TemplateSpec
from core.errors import NotFound, PressroomError
from core.flags import FeatureFlag, checked_flag
from core.qa import Tolerances
from core.sampling import SpotCheckPolicy
from core.services.qa import HUMAN_REVIEW_FLAG, QaRules
from core.states import PrintMethod, Role
from core.templates import Change, diff_specs

if TYPE_CHECKING:
    from PIL import Image

EDIT_PARTNER = "partner.edit"
SAVE_TEMPLATE = "template.save_version"
ADD_WORD, REMOVE_WORD = "words.add", "words.remove"
EDIT_QA_RULES = "qa.edit_rules"
SET_FLAG, REMOVE_FLAG = "flag.set", "flag.remove"
CREATE_USER, SET_USER_ACTIVE, CHANGE_ROLE = "staff.create", "staff.set_active", "staff.change_role"
"""Action ids: the same words as core.policy.ACTIONS and the audit log's `action` column."""

QA_RULES_KEY = "qa_rules"
"""The settings row holding the spot-check rate and QA tolerances (see `qa_rules_to_document`)."""

KNOWN_FLAGS: Mapping[str, str] = {
    HUMAN_REVIEW_FLAG: "Automatically passed prints also go to a QA inspector (onboarding a partner, watching "
                       "a new template); the rollout is the share of jobs sent.",
}
"""Flags the code reads, with what they do: a key nobody reads would switch nothing, so it is refused."""


class AdminInvalid(PressroomError):
    """An admin change that cannot be saved as given; nothing was changed."""

    code = "admin_invalid"


def _audit(uow, *, actor: str, action: str, target_type: str, target_id: str, before: Any, after: Any,
           at: datetime) -> None:
    uow.audit.record(actor=actor, action=action, target_type=target_type, target_id=target_id, order_id=None,
                     before=before, after=after, at=at)


# ---- partners ---------------------------------------------------------------------------------------------------

PARTNER_EDITABLE = ("name", "region", "country", "city", "lat", "lon", "print_methods", "capacity_per_hour", "active")


def checked_partner_changes(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The partner row after `changes`, or the first thing wrong with it.

    Raises:
        AdminInvalid: unknown field or print method, negative or non-numeric capacity, a method without its
            capacity, an active partner with no method, a bad location.
    """
    unknown = sorted(set(changes) - set(PARTNER_EDITABLE))
    if unknown:
        raise AdminInvalid(f"These partner fields cannot be edited here: {', '.join(unknown)}.")
    row = {name: current[name] for name in PARTNER_EDITABLE} | dict(changes)
    methods = [str(m) for m in row["print_methods"]]
    bad = sorted(set(methods) - set(PrintMethod))
    if bad:
        raise AdminInvalid(f"Unknown print method {', '.join(bad)}; use {', '.join(PrintMethod)}.")
    capacity: dict[str, float] = {}
    for method, value in dict(row["capacity_per_hour"]).items():
        number = _number(value, f"The capacity for {method}")
        if number < 0:
            raise AdminInvalid(f"The capacity for {method} cannot be negative ({value}); use 0 to stop sending it.")
        capacity[str(method)] = int(number) if number == int(number) else number
    missing = [m for m in methods if m not in capacity]
    if missing:
        raise AdminInvalid(f"Give a capacity per hour for {', '.join(missing)}.")
    if bool(row["active"]) and not methods:
        raise AdminInvalid("An active partner needs at least one print method.")
    for name, label in (("name", "name"), ("city", "city"), ("region", "region")):
        if not str(row[name]).strip():
            raise AdminInvalid(f"The partner's {label} cannot be empty.")
    country = str(row["country"]).strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise AdminInvalid(f"The country is a two-letter code such as US or DE, not {row['country']!r}.")
    lat, lon = _number(row["lat"], "The latitude"), _number(row["lon"], "The longitude")
    if not -90 <= lat <= 90 or not -180 <= lon <= 180:
        raise AdminInvalid("The latitude must be within -90…90 and the longitude within -180…180.")
    return {**row, "name": str(row["name"]).strip(), "city": str(row["city"]).strip(),
            "region": str(row["region"]).strip(), "country": country, "lat": lat, "lon": lon,
            "print_methods": [m for m in PrintMethod if m in methods],
            "capacity_per_hour": {m: capacity[m] for m in sorted(capacity) if m in methods},
            "active": bool(row["active"])}


def update_partner(partner_id: str, changes: Mapping[str, Any], *, uow, actor: str, at: datetime) -> dict[str, Any]:
    """Change a partner's capacity, methods, location or active flag; routing and batching read it next time.

    Raises:
        NotFound: no such partner.
        AdminInvalid: see `checked_partner_changes`; or nothing would change.
    """
    with uow:
        current = uow.partner_settings.get(partner_id, lock=True)
        if current is None:
            raise NotFound(f"There is no partner {partner_id!r}.")
        after = checked_partner_changes(current, changes)
        before = {name: current[name] for name in PARTNER_EDITABLE}
        if after == before:
            raise AdminInvalid("That is what is stored already: nothing to save.")
        uow.partner_settings.update(partner_id, after)
        changed = sorted(name for name in PARTNER_EDITABLE if after[name] != before[name])
        _audit(uow, actor=actor, action=EDIT_PARTNER, target_type="partner", target_id=partner_id,
               before={name: before[name] for name in changed}, after={name: after[name] for name in changed}, at=at)
        uow.commit()
    return after


def _number(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AdminInvalid(f"{what} must be a number, not {value!r}.") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise AdminInvalid(f"{what} must be a number, not {value!r}.")
    return number


# ---- templates --------------------------------------------------------------------------------------------------

PREVIEW_DPI = 40
"""The preview renders the layout at this resolution: the same design, in a fraction of a second."""


def parse_spec(text: str) -> dict[str, Any]:
    """A template document typed into the editor.

    Raises:
        AdminInvalid: not JSON, or not a JSON object; the message says where.
    """
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise AdminInvalid(f"The template is not valid JSON: {error.msg} at line {error.lineno}, column "
                           f"{error.colno}.") from None
    if not isinstance(spec, dict):
        raise AdminInvalid("The template must be a JSON object ({ … }).")
    return spec


def check_spec(key: str, spec: Mapping[str, Any]) -> TemplateSpec:
    """What intake and the renderer need from a template, checked at full resolution.

    Raises:
        AdminInvalid: a field intake reads is missing or malformed.
        RenderError: the layout cannot be rendered (names the field).
    """
    try:
        template = TemplateSpec.from_spec(key, 0, spec)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise AdminInvalid(f"Template {key}: a required field is missing or malformed ({error!r}); every "
                           "template needs dpi, print_area_in, min_effective_dpi, artwork.box_in and, per text "
                           "slot, name, max_chars and charset.") from None
    from core.render import text_fits  # the renderer (numpy, PIL) is loaded by the pages that check templates

    text_fits(spec, "", "")  # parses the whole layout at print resolution; raises RenderError naming the field
    return template


def sample_texts(spec: Mapping[str, Any]) -> dict[str, str]:
    """A short sample for each text slot, so the preview shows where and how big text prints."""
    return {slot["name"]: "Sample text"[:max(1, int(slot.get("max_chars", 11)))]
            for slot in spec.get("texts", ()) if isinstance(slot, Mapping) and slot.get("name")}


def sample_artwork(size: int = 600) -> Image.Image:
    """A stand-in design: a colour gradient with a frame and a cross, so fit, fill and the box show."""
    from PIL import Image, ImageDraw

    image = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    image = Image.merge("RGB", (image.getchannel(0), image.getchannel(0).rotate(90), Image.new("L", image.size, 160)))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, size - 1, size - 1), outline=(20, 20, 20), width=max(2, size // 60))
    draw.line((0, 0, size, size), fill=(20, 20, 20), width=max(2, size // 100))
    draw.line((0, size, size, 0), fill=(20, 20, 20), width=max(2, size // 100))
    return image


def preview_template(key: str, spec: Mapping[str, Any], *, product_type: str, print_method: str,
                     colour: str | None, texts: Mapping[str, str] | None = None) -> bytes:
    """A mock-up (JPEG) of an edited template with sample artwork and texts, before anything is saved.

    Raises:
        AdminInvalid, RenderError: the template cannot be used as written (the message names the field).
    """
    from core.render import render_asset

    check_spec(key, spec)
    small = copy.deepcopy(dict(spec)) | {"key": key}
    small["dpi"] = min(PREVIEW_DPI, int(spec["dpi"]))
    rendered = render_asset(small, artwork=sample_artwork(), texts=sample_texts(spec) if texts is None else texts,
                            product_type=product_type, print_method=print_method, colour=colour, make_pdf=False,
                            encode_threads=1)
    return rendered.preview


def template_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """What changed between two versions, leaf by leaf (core.templates.diff_specs)."""
    return diff_specs(old, new)


def save_template_version(key: str, spec: Mapping[str, Any], *, based_on: int, note: str, uow, actor: str,
                          at: datetime) -> int:
    """Store an edited template as the next version and make it current; orders keep their pinned version.

    Raises:
        NotFound: no such template version to base it on.
        AdminInvalid: the document is unusable, identical to the version it was edited from, or has no note.
        RenderError: the layout cannot be rendered.
    """
    check_spec(key, spec)
    if not note.strip():
        raise AdminInvalid("Say in a few words what this version changes (it goes on the version list).")
    with uow:
        base = uow.templates.spec(key, based_on)
        if base is None:
            raise NotFound(f"Template {key} has no version {based_on}.")
        changes = diff_specs(base, spec)
        if not changes:
            raise AdminInvalid(f"This is the same as version {based_on}: nothing to save.")
        version = uow.templates.add_version(key=key, spec=dict(spec), author=actor, note=note.strip(), at=at)
        _audit(uow, actor=actor, action=SAVE_TEMPLATE, target_type="template", target_id=key,
               before={"version": based_on, **{c.path: c.before for c in changes}},
               after={"version": version, **{c.path: c.after for c in changes}}, at=at)
        uow.commit()
    return version


# ---- prohibited words -------------------------------------------------------------------------------------------

MAX_WORD = 80


def normalised_word(word: str) -> str:
    """How a list entry is stored: trimmed, lower case, inner spaces collapsed.

    Raises:
        AdminInvalid: empty, or longer than the column holds.
    """
    cleaned = " ".join(str(word).split()).lower()
    if not cleaned:
        raise AdminInvalid("Type the word to add; an empty entry would match nothing.")
    if len(cleaned) > MAX_WORD:
        raise AdminInvalid(f"A list entry has at most {MAX_WORD} characters.")
    return cleaned


def add_prohibited_word(word: str, *, uow, actor: str, at: datetime) -> str:
    """Add a word; intake refuses it from the next checkout on (it reads the list per request)."""
    cleaned = normalised_word(word)
    with uow:
        if uow.prohibited_words.has(cleaned):
            raise AdminInvalid(f"{cleaned!r} is already on the list.")
        uow.prohibited_words.add(cleaned, by=actor, at=at)
        _audit(uow, actor=actor, action=ADD_WORD, target_type="prohibited_word", target_id=cleaned, before=None,
               after={"word": cleaned}, at=at)
        uow.commit()
    return cleaned


def remove_prohibited_word(word: str, *, uow, actor: str, at: datetime) -> str:
    cleaned = normalised_word(word)
    with uow:
        if not uow.prohibited_words.remove(cleaned):
            raise NotFound(f"{cleaned!r} is not on the list.")
        _audit(uow, actor=actor, action=REMOVE_WORD, target_type="prohibited_word", target_id=cleaned,
               before={"word": cleaned}, after=None, at=at)
        uow.commit()
    return cleaned


# ---- QA rules: spot-check rate and tolerances --------------------------------------------------------------------

EDITABLE_TOLERANCES: Mapping[str, str] = {
    "delta_e_global": "Colour shift allowed (ΔE over the inked area)",
    "delta_e_local": "Local colour difference before a pixel is a defect (ΔE)",
    "blob_mm": "Largest blot or smudge (mm)",
    "missing_mm": "Largest patch of missing ink (mm)",
    "shift_mm": "Largest offset of the design (mm)",
    "fade": "Largest share of ink faded away (0–1)",
    "review_margin": "Borderline band below each threshold, as a share of it (0–1)",
}
"""The tolerances managers tune, with their labels; the others keep core.qa's defaults."""
_FRACTIONS = frozenset({"fade", "review_margin"})


def qa_rules_to_document(rules: QaRules) -> dict[str, Any]:
    """The JSON stored under QA_RULES_KEY: the spot-check rate and the editable tolerances."""
    return {"spot_check_rate": rules.spot_checks.rate,
            "tolerances": {name: getattr(rules.tolerances, name) for name in EDITABLE_TOLERANCES}}


def qa_rules_from_document(document: Mapping[str, Any] | None, *, flags: tuple[FeatureFlag, ...] = (),
                           defaults: QaRules = QaRules()) -> QaRules:
    """Stored QA rules over `defaults` (a field not stored keeps its default), with the feature flags.

    Raises:
        AdminInvalid: a stored value is out of range (see `checked_qa_document`).
    """
    checked = checked_qa_document(document or {}, defaults=defaults)
    tolerances = replace(defaults.tolerances, **checked["tolerances"])
    return replace(defaults, spot_checks=replace(defaults.spot_checks, rate=checked["spot_check_rate"]),
                   tolerances=tolerances, flags=tuple(flags))


def checked_qa_document(document: Mapping[str, Any], *, defaults: QaRules = QaRules()) -> dict[str, Any]:
    """A complete QA rules document with every value in range.

    Raises:
        AdminInvalid: the rate is outside 0–1, a tolerance is not positive, a share is 1 or more, or a field
            is unknown.
    """
    rate = _number(document.get("spot_check_rate", defaults.spot_checks.rate), "The spot-check rate")
    if not 0 <= rate <= 1:
        raise AdminInvalid(f"The spot-check rate is a share from 0 to 100 %, not {rate * 100:g} %.")
    stored = dict(document.get("tolerances") or {})
    unknown = sorted(set(stored) - set(EDITABLE_TOLERANCES))
    if unknown:
        raise AdminInvalid(f"Unknown QA tolerance {', '.join(unknown)}.")
    tolerances = {}
    for name, label in EDITABLE_TOLERANCES.items():
        value = _number(stored.get(name, getattr(defaults.tolerances, name)), label)
        if value <= 0 or (name in _FRACTIONS and value >= 1):
            limit = "above 0 and below 1" if name in _FRACTIONS else "above 0"
            raise AdminInvalid(f"{label} must be {limit}, not {value:g}.")
        tolerances[name] = value
    return {"spot_check_rate": rate, "tolerances": tolerances}


def load_qa_rules(uow, *, defaults: QaRules = QaRules()) -> QaRules:
    """The QA rules in force: the stored document and the feature flags, read now (the worker calls it per job).

    Opens its own short transaction, so call it before (not inside) another `with uow:` block.
    """
    with uow:
        return qa_rules_from_document(uow.settings_store.get(QA_RULES_KEY), flags=tuple(uow.flags.all()),
                                      defaults=defaults)


def save_qa_rules(document: Mapping[str, Any], *, uow, actor: str, at: datetime) -> dict[str, Any]:
    """Store a new spot-check rate and tolerances; the QA worker inspects the next print with them."""
    with uow:
        before = uow.settings_store.get(QA_RULES_KEY)
        checked = checked_qa_document(document, defaults=QaRules())
        if before is not None and checked == checked_qa_document(before):
            raise AdminInvalid("Those are the rules in force already: nothing to save.")
        uow.settings_store.put(QA_RULES_KEY, checked, by=actor, at=at)
        _audit(uow, actor=actor, action=EDIT_QA_RULES, target_type="setting", target_id=QA_RULES_KEY,
               before=before or qa_rules_to_document(QaRules()), after=checked, at=at)
        uow.commit()
    return checked


# ---- feature flags ----------------------------------------------------------------------------------------------


def _flag_dict(flag: FeatureFlag | None) -> dict[str, Any] | None:
    return None if flag is None else asdict(flag) | {"scope": str(flag.scope)}


def set_flag(*, key: str, scope: str, scope_id: str, enabled: bool, rollout_percent: float, uow, actor: str,
             at: datetime) -> FeatureFlag:
    """Create or change one flag row (per key, scope and partner/template id).

    Raises:
        FlagInvalid: see core.flags.checked_flag (a rollout outside 0–100 among others).
        AdminInvalid: the key is not one the code reads.
    """
    flag = checked_flag(key=key, scope=scope, scope_id=scope_id, enabled=enabled, rollout_percent=rollout_percent)
    if flag.key not in KNOWN_FLAGS:
        raise AdminInvalid(f"No code reads a flag called {flag.key!r}; known flags: {', '.join(KNOWN_FLAGS)}.")
    with uow:
        before = uow.flags.get(flag.key, str(flag.scope), flag.scope_id)
        uow.flags.put(flag, at=at)
        _audit(uow, actor=actor, action=SET_FLAG, target_type="feature_flag", target_id=_flag_id(flag),
               before=_flag_dict(before), after=_flag_dict(flag), at=at)
        uow.commit()
    return flag


def remove_flag(*, key: str, scope: str, scope_id: str, uow, actor: str, at: datetime) -> None:
    with uow:
        before = uow.flags.get(key, scope, scope_id)
        if before is None or not uow.flags.remove(key, scope, scope_id):
            raise NotFound(f"There is no flag {key} for {scope} {scope_id}".rstrip() + ".")
        _audit(uow, actor=actor, action=REMOVE_FLAG, target_type="feature_flag", target_id=_flag_id(before),
               before=_flag_dict(before), after=None, at=at)
        uow.commit()


def _flag_id(flag: FeatureFlag) -> str:
    return f"{flag.key}@{flag.scope}" + (f":{flag.scope_id}" if flag.scope_id else "")


# ---- staff users ------------------------------------------------------------------------------------------------

USERNAME = re.compile(r"[a-z][a-z0-9._-]{2,79}")
MIN_PASSWORD = 12


def password_problem(password: str, *, username: str) -> str | None:
    """Why a new password is too weak, or None.

    At least 12 characters from three kinds (lower case, upper case, digits, symbols), or a passphrase of 20
    or more; never containing the username.
    """
    kinds = sum(bool(re.search(pattern, password)) for pattern in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))
    if len(password) < MIN_PASSWORD:
        return f"The password needs at least {MIN_PASSWORD} characters."
    if username and username.lower() in password.lower():
        return "The password must not contain the username."
    if len(set(password)) < 6:
        return "The password repeats too few characters; choose something less guessable."
    if kinds < 3 and len(password) < 20:
        return ("Mix three kinds of character (lower case, upper case, digits, symbols), or use a passphrase of "
                "20 characters or more.")
    return None


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise AdminInvalid(f"Unknown role {role!r}; choose one of {', '.join(Role)}.") from None


def create_user(username: str, role: str, password: str, *, uow, actor: str, at: datetime,
                hash_password: Callable[[str], str]) -> str:
    """A new staff account with a role and an initial password (stored only as its argon2 hash).

    Raises:
        AdminInvalid: a bad or taken username, an unknown role or a weak password.
    """
    name = username.strip()
    if not USERNAME.fullmatch(name):
        raise AdminInvalid("A username is 3–80 characters: lower-case letters first, then letters, digits, "
                           "dots, dashes or underscores.")
    member = _role(role)
    weak = password_problem(password, username=name)
    if weak:
        raise AdminInvalid(weak)
    with uow:
        if uow.staff.get(name) is not None:
            raise AdminInvalid(f"The username {name!r} is taken; choose another.")
        uow.staff.add(username=name, password_hash=hash_password(password), role=member, at=at)
        _audit(uow, actor=actor, action=CREATE_USER, target_type="staff_user", target_id=name, before=None,
               after={"role": str(member), "active": True}, at=at)
        uow.commit()
    return name


def _keep_a_manager(managers: list[str], user: Mapping[str, Any], *, losing: str) -> None:
    if user["role"] == Role.MANAGER and user["active"] and managers == [user["username"]]:
        raise AdminInvalid(f"{user['username']} is the last active manager: {losing} would leave nobody to run the "
                           "admin pages. Make someone else a manager first.")


def set_user_active(username: str, active: bool, *, uow, actor: str, at: datetime) -> None:
    """Disable (signed out on their next click) or re-enable an account.

    Raises:
        NotFound: no such account.
        AdminInvalid: disabling yourself, or the last active manager; or no change.
    """
    with uow:
        managers = uow.staff.active_managers()  # locked first, in one order, so concurrent changes serialise
        user = uow.staff.get(username, lock=True)
        if user is None:
            raise NotFound(f"There is no staff account {username!r}.")
        if not active and username == actor:
            raise AdminInvalid("You cannot disable your own account; ask another manager.")
        if user["active"] == active:
            raise AdminInvalid(f"{username} is already {'enabled' if active else 'disabled'}.")
        if not active:
            _keep_a_manager(managers, user, losing="disabling them")
        # Re-enabling also clears a lockout, so the person can sign in straight away.
        uow.staff.update(username, active=active, **({"failed_logins": 0, "locked_until": None} if active else {}))
        _audit(uow, actor=actor, action=SET_USER_ACTIVE, target_type="staff_user", target_id=username,
               before={"active": user["active"]}, after={"active": active}, at=at)
        uow.commit()


def change_role(username: str, role: str, *, uow, actor: str, at: datetime) -> None:
    """Give an account another role; it applies from the user's next click.

    Raises:
        NotFound: no such account.
        AdminInvalid: an unknown role, the same role, or demoting the last active manager.
    """
    member = _role(role)
    with uow:
        managers = uow.staff.active_managers()
        user = uow.staff.get(username, lock=True)
        if user is None:
            raise NotFound(f"There is no staff account {username!r}.")
        if user["role"] == member:
            raise AdminInvalid(f"{username} is a {member} already.")
        if member != Role.MANAGER:
            _keep_a_manager(managers, user, losing="changing their role")
        uow.staff.update(username, role=member)
        _audit(uow, actor=actor, action=CHANGE_ROLE, target_type="staff_user", target_id=username,
               before={"role": user["role"]}, after={"role": str(member)}, at=at)
        uow.commit()


def tolerance_defaults() -> dict[str, float]:
    """core.qa's default for each editable tolerance (shown next to the stored value)."""
    defaults = Tolerances()
    return {f.name: getattr(defaults, f.name) for f in fields(Tolerances) if f.name in EDITABLE_TOLERANCES}


def sample_rate_defaults() -> float:
    return SpotCheckPolicy().rate
