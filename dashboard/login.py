"""Signing in: OIDC via ``st.login`` when configured, else the local accounts file.

The signed-in :class:`blastwall.access.User` lives in the session; every action checks
its role on the server (:class:`blastwall.access.ConsoleActions`).
"""

from __future__ import annotations

from urllib.parse import urlparse

import streamlit as st

from blastwall.access import AccessDenied, AccountsError, User, load_accounts
from dashboard import style
from dashboard.state import SIGN_IN_THROTTLE, accounts_path, client_address


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all
        return False


def signed_in_user() -> User | None:
    """The session's user, completing an OIDC sign-in when the identity provider sent one back."""
    if "user" in st.session_state:
        return st.session_state["user"]
    if _oidc_configured() and getattr(st.user, "is_logged_in", False):
        accounts = _accounts()
        if st.user.get("email_verified") is False:
            st.error("Your identity provider has not verified your e-mail address; it cannot be given a role.")
            return None
        if accounts is not None:
            try:
                st.session_state["user"] = accounts.for_oidc(str(st.user.get("email", "")),
                                                             str(st.user.get("name", "")))
            except AccessDenied as refused:
                st.error(f"{style.text(refused)} Ask an admin to add your e-mail to the accounts file.")
                return None
            return st.session_state["user"]
    return None


def _accounts():
    path = accounts_path()
    try:
        return load_accounts(path)
    except AccountsError as error:
        st.error(style.text(error))
        st.info(f"Create an account: `blastwall account add USER --role admin --file {path}`")
        return None


def form() -> None:
    """The sign-in page."""
    st.title("blastwall")
    st.caption("Anomaly detection and incident response for the data paths of AI training")
    if _oidc_configured():
        st.button("Sign in with your identity provider", on_click=st.login, type="primary")
        return
    accounts = _accounts()
    if accounts is None:
        return
    with st.form("sign_in"):
        user = st.text_input("User", key="sign_in_user")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            found = accounts.sign_in(user, password, client_address(), SIGN_IN_THROTTLE)
        except AccessDenied as refused:
            st.error(str(refused)[0].upper() + str(refused)[1:] + ".")
        else:
            st.session_state["user"] = found
            st.rerun()


def sidebar(user: User) -> None:
    """Who is signed in, and signing out."""
    with st.sidebar:
        st.write(f"**{style.text(user.name or user.user)}** · {user.role}")
        if st.button("Sign out", key="sign_out"):
            for key in list(st.session_state):  # nothing of this user stays for the next one
                if key != "options":
                    del st.session_state[key]
            if _oidc_configured() and getattr(st.user, "is_logged_in", False):
                st.logout()
            st.rerun()


def remember_destination() -> None:
    """Keep the page and query a visitor asked for (a link from a page, a bookmark) across signing in."""
    if "after_sign_in" in st.session_state:
        return
    try:
        path = urlparse(st.context.url or "").path.strip("/").rsplit("/", 1)[-1]
    except Exception:  # noqa: BLE001 - no browser context (AppTest)
        path = ""
    st.session_state["after_sign_in"] = (path, st.query_params.to_dict())


def go_to_destination(pages: list) -> None:  # list of st.Page
    """Right after signing in, open the page the visitor asked for (once), with its query."""
    path, query = st.session_state.pop("after_sign_in", ("", {}))
    page = next((p for p in pages if path and p.url_path == path), None)
    if page is not None:
        st.switch_page(page, query_params=query)
