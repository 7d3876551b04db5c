"""The security log in words: what each recorded event means to the account's owner."""

from __future__ import annotations

from portal.services.accounts import LogEntry

LABELS = {
    "account_created": "Account created",
    "sign_up_repeated": "Someone tried to register this address again",
    "confirmation_resent": "Confirmation link sent again",
    "email_confirmed": "Email address confirmed",
    "signed_in": "Signed in",
    "signed_out": "Signed out",
    "sign_in_failed": "Failed sign-in: wrong password",
    "sign_in_refused": "Sign-in refused",
    "mfa_failed": "Wrong two-factor code",
    "password_check_failed": "Wrong password when confirming a change",
    "session_refused": "Session refused",
    "session_revoked": "A session was signed out from this page",
    "signed_out_everywhere": "Signed out everywhere else",
    "security_stamp_rotated": "Other sessions ended",
    "password_reset_requested": "Password reset link sent",
    "password_reset": "Password reset with an emailed link",
    "password_changed": "Password changed",
    "email_change_requested": "Email address change asked for",
    "email_changed": "Email address changed",
    "mfa_enabled": "Two-factor sign-in turned on",
    "mfa_disabled": "Two-factor sign-in turned off",
    "recovery_codes_regenerated": "New recovery codes made",
    "recovery_code_used": "Recovery code used",
    "ip_binding_changed": "Address binding of sessions changed",
}
METHODS = {"totp": "a code from the authenticator app", "recovery code": "a recovery code"}


def describe(entry: LogEntry) -> str:
    """"Signed in (with a recovery code)", "Session refused: security stamp changed" …"""
    label = LABELS.get(entry.event, entry.event.replace("_", " ").capitalize())
    details = entry.details
    if entry.event == "signed_in" and details.get("method") in METHODS:
        return f"{label} with the password and {METHODS[details['method']]}"
    if entry.event == "email_change_requested" and details.get("to"):
        return f"{label}: to {details['to']}"
    if entry.event == "email_changed" and details.get("new"):
        return f"{label}: from {details.get('old', '?')} to {details['new']}"
    if entry.event == "ip_binding_changed" and details.get("new"):
        return f"{label}: {details.get('old', '?')} → {details['new']}"
    if details.get("reason"):
        return f"{label}: {details['reason']}"
    return label
