"""Sign-up, log-in (password or emailed link), log-out, address confirmation, password reset,
and the account page. HTTP only: the rules are in server/accounts, the rows in server/store.

Every answer about an address reads the same whether it has an account or not:
sign-up always says "check your inbox" (the owner of a taken address gets an
email instead of an account), and a failed log-in never says which half was wrong.
Every credential form is rate-limited per client address and per address typed.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import tornado.escape
import tornado.web

from server.accounts import passwords, rules
from server.accounts.deletion import AccountDeletion
from server.accounts.limiter import CredentialLimiter
from server.accounts.redirects import local_redirect
from server.accounts.rules import InvalidInput, SignUp
from server.accounts.tokens import Purpose, digest, lifetime
from server.admin.flags import SIGNUPS_OPEN, FeatureFlags
from server.handlers.base import SESSION_COOKIE, USER_COOKIE, BaseHandler, Common, too_many
from server.mail.mailer import Mailer
from server.mail.reminders import unsubscribed_user
from server.store import accounts, reminders, sessions, tokens

CHECK_INBOX = ("If {email} can receive mail, a message is on its way to it. "
               "Open the link inside to continue.")
SIGNUPS_CLOSED = ("We are not taking new accounts at the moment; please come back later. "
                  "If you already have an account, log in as usual.")
BAD_LOGIN = ("That address and password do not match a confirmed account. If you have just "
             "signed up, open the link we emailed you first.")


class AccountHandler(BaseHandler):
    route = "accounts"

    def initialize(self, common: Common, limiter: CredentialLimiter, mailer: Mailer,
                   deletion: AccountDeletion) -> None:
        super().initialize(common)
        self.limiter = limiter
        self.mailer = mailer
        self.deletion = deletion

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    # --- helpers shared by the pages ---

    async def spend_attempt(self, account: str) -> str:
        """One credential attempt for this client address and `account`, or a 429."""
        ip = self.request.remote_ip or "-"
        decision = await self.limiter.attempt(ip, account)
        if not decision.allowed:
            raise too_many(f"Too many attempts; try again in {decision.retry_after_header} s.",
                           decision.retry_after_header)
        return ip

    def form(self, title: str, fields: list[tuple[str, str, str, str]], submit: str, *,
             action: str | None = None, error: str | None = None, status: int = 200,
             intro: str = "", hidden: dict[str, str] | None = None, links: tuple = ()) -> None:
        """One form page: fields are (name, label, input type, autocomplete)."""
        self.set_status(status)
        self.render("account_form.html", title=title, fields=fields, submit=submit,
                    action=action or self.request.uri, error=error, intro=intro,
                    hidden=hidden or {}, links=links, values=self.request.body_arguments)

    def message(self, title: str, text: str, status: int = 200) -> None:
        self.set_status(status)
        self.render("account_message.html", title=title, text=text)

    def anonymous_id(self) -> str | None:
        raw = self.get_signed_cookie(USER_COOKIE, max_age_days=365)
        return raw.decode() if raw else None

    def session_token(self) -> str | None:
        raw = self.get_signed_cookie(SESSION_COOKIE, max_age_days=self.settings_.session_days)
        return raw.decode() if raw else None

    async def sign_in(self, user_id: str, *anonymous_ids: str | None) -> None:
        """A new session for `user_id` (the browser's old one ends: rotated at every sign-in),
        with the anonymous learner's progress carried over."""
        for anonymous_id in {self.anonymous_id(), *anonymous_ids} - {None}:
            await accounts.carry_over(self.common.engine, anonymous_id, user_id)
        old = self.session_token()
        if old is not None:
            await sessions.end(self.common.engine, old)
        token = await sessions.start(self.common.engine, user_id,
                                     self.request.headers.get("User-Agent", ""),
                                     self.request.remote_ip or "")
        secure = self.settings_.secure_cookies
        self.set_signed_cookie(SESSION_COOKIE, token, expires_days=self.settings_.session_days,
                               httponly=True, samesite="Lax", secure=secure)
        # A fresh anonymous id (no row): the browser keeps a user cookie, so cookie-authenticated
        # APIs keep checking XSRF, and after log-out it starts over as nobody in particular.
        self.set_signed_cookie(USER_COOKIE, secrets.token_hex(16), expires_days=365,
                               httponly=True, samesite="Lax", secure=secure)

    def sign_out_cookies(self) -> None:
        for name in (SESSION_COOKIE, USER_COOKIE):
            self.clear_cookie(name)

    def next_page(self) -> str:
        return local_redirect(self.get_argument("next", ""), default="/")

    def link(self, path: str, secret: str) -> str:
        return f"{self.settings_.public_url.rstrip('/')}{path}?token={secret}"

    async def email_link(self, kind: str, purpose: Purpose, path: str, account: accounts.Account,
                         anonymous_id: str | None = None, new_email: str | None = None) -> None:
        """A single-use link of `purpose` to the account's address (or to the new one)."""
        issued = await tokens.issue(self.common.engine, purpose, account.id,
                                    lifetime(purpose, self.settings_.link_minutes), anonymous_id,
                                    new_email)
        await self.mailer.send(kind, new_email or account.email, trigger=issued.id,
                               user_id=account.id, link=self.link(path, issued.secret),
                               minutes=f"{self.settings_.link_minutes:g}")

    async def signed_in_account(self) -> accounts.Account:
        """The signed-in account, or a redirect to the log-in page."""
        user = await self.load_user()
        account = await accounts.by_id(self.common.engine, user.id) if user and user.email else None
        if account is None or self.session_token() is None:
            self.redirect("/login?next=" + tornado.escape.url_escape(self.request.uri))
            raise tornado.web.Finish()
        return account


SIGNUP_FIELDS = [("email", "Email", "email", "email"), ("password", "Password (8 characters or more)",
                                                          "password", "new-password")]
LOGIN_FIELDS = [("email", "Email", "email", "email"),
                ("password", "Password", "password", "current-password")]
EMAIL_FIELD = [("email", "Email", "email", "email")]
NEW_PASSWORD = [("password", "New password (8 characters or more)", "password", "new-password")]


class SignUpHandler(AccountHandler):
    def initialize(self, common: Common, limiter: CredentialLimiter, mailer: Mailer,
                   deletion: AccountDeletion, flags: FeatureFlags | None = None) -> None:
        super().initialize(common, limiter, mailer, deletion)
        self.flags = flags

    def prepare(self) -> None:
        super().prepare()
        if self.flags is not None and not self.flags.on(SIGNUPS_OPEN):   # set by an admin
            self.message("Sign-ups are closed for now", SIGNUPS_CLOSED, status=403)
            raise tornado.web.Finish()

    def get(self) -> None:
        self.form("Sign up", SIGNUP_FIELDS, "Sign up", links=(("/login", "I have an account"),))

    async def post(self) -> None:
        try:
            email = rules.normalize_email(self.get_body_argument("email", ""))
            password = rules.check_password(self.get_body_argument("password", ""))
        except InvalidInput as exc:
            return self.form("Sign up", SIGNUP_FIELDS, "Sign up", error=str(exc), status=400)
        await self.spend_attempt(f"email:{email}")
        password_hash = await passwords.hash_password(password)   # in every case: same time
        # Answered before anything that depends on the address, so neither the page nor the
        # time it took can tell whether the address has an account.
        self.message("Check your inbox", CHECK_INBOX.format(email=email))
        await self.sign_up(email, password_hash)

    async def sign_up(self, email: str, password_hash: str) -> None:
        engine = self.common.engine
        account = await accounts.by_email(engine, email)
        action = rules.sign_up(None if account is None else account.verified)
        if action is SignUp.CREATE:
            try:
                account = await accounts.create(engine, email, password_hash)
            except accounts.AddressTaken:       # a sign-up raced this one: it sends the link
                account, action = None, None
        elif action is SignUp.RETRY:
            await accounts.set_password(engine, account.id, password_hash)
        if action in (SignUp.CREATE, SignUp.RETRY):
            await self.email_link("verify", Purpose.VERIFY, "/verify", account, self.anonymous_id())
        elif action is SignUp.ALREADY:
            await self.mailer.send("already", email, trigger=f"{account.id}:{secrets.token_hex(8)}",
                                   user_id=account.id)


class LoginHandler(AccountHandler):
    def get(self) -> None:
        self.login_form()

    def login_form(self, error: str | None = None, status: int = 200) -> None:
        self.form("Log in", LOGIN_FIELDS, "Log in", error=error, status=status,
                  links=(("/login/link", "Email me a sign-in link instead"),
                         ("/password/reset", "I forgot my password"), ("/signup", "Sign up")))

    async def post(self) -> None:
        try:
            email = rules.normalize_email(self.get_body_argument("email", ""))
        except InvalidInput as exc:
            return self.login_form(str(exc), 400)
        ip = await self.spend_attempt(f"email:{email}")
        account = await accounts.by_email(self.common.engine, email)
        matches = await passwords.verify_password(account.password_hash if account else None,
                                                  self.get_body_argument("password", ""))
        if not (matches and account.verified):
            return self.login_form(BAD_LOGIN, 400)
        await self.limiter.succeeded(ip, f"email:{email}")
        await self.sign_in(account.id)
        self.redirect(self.next_page())


class LogoutHandler(AccountHandler):
    async def post(self) -> None:
        token = self.session_token()
        if token is not None:
            await sessions.end(self.common.engine, token)
        self.sign_out_cookies()
        self.redirect("/")


class EmailedLinkRequest(AccountHandler):
    """Ask for a sign-in link or a password reset link; the answer never says if one was sent."""
    title, kind, purpose, path = "", "", Purpose.MAGIC, ""

    def get(self) -> None:
        self.form(self.title, EMAIL_FIELD, "Email me the link")

    async def post(self) -> None:
        try:
            email = rules.normalize_email(self.get_body_argument("email", ""))
        except InvalidInput as exc:
            return self.form(self.title, EMAIL_FIELD, "Email me the link", error=str(exc), status=400)
        await self.spend_attempt(f"email:{email}")
        self.message("Check your inbox", CHECK_INBOX.format(email=email))   # first, as at sign-up
        account = await accounts.by_email(self.common.engine, email)
        if account is not None:
            await self.email_link(self.kind, self.purpose, self.path, account)


class MagicLinkRequest(EmailedLinkRequest):
    title, kind, purpose, path = "Sign in by email", "magic", Purpose.MAGIC, "/login/link/open"


class ResetRequest(EmailedLinkRequest):
    title, kind, purpose, path = "Choose a new password", "reset", Purpose.RESET, "/password/reset/open"


class EmailedLinkOpen(AccountHandler):
    """An emailed link opens a page with one button: mail scanners that fetch links (GET) never
    use up the token; the browser's POST does."""
    purpose = Purpose.MAGIC
    title, submit = "", ""
    fields: list = []

    async def get(self) -> None:
        secret = self.get_query_argument("token", "")
        if not await tokens.peek(self.common.engine, secret, self.purpose):
            return self.expired()
        self.form(self.title, self.fields, self.submit, action=self.request.path,
                  hidden={"token": secret})

    def expired(self) -> None:
        self.message("This link no longer works",
                     "Links we email work once and for a limited time. Ask for a new one.", 400)

    async def post(self) -> None:
        # No rate limit: a token has 256 random bits, and a limit keyed on nothing
        # but the address would let one client lock everyone's links.
        redeemed = await tokens.redeem(self.common.engine, self.get_body_argument("token", ""),
                                       self.purpose)
        if redeemed is None:
            return self.expired()
        fresh = await accounts.mark_verified(self.common.engine, redeemed.user_id)   # it came by mail
        await self.redeemed(redeemed, fresh)
        await self.sign_in(redeemed.user_id, redeemed.anonymous_id)
        self.redirect("/account" if self.purpose is not Purpose.MAGIC else "/")

    async def redeemed(self, redeemed: tokens.Redeemed, newly_verified: bool) -> None:
        """What the link does besides signing in."""


class MagicLinkOpen(EmailedLinkOpen):
    purpose, title, submit = Purpose.MAGIC, "Sign in", "Sign me in"


class VerifyOpen(EmailedLinkOpen):
    purpose, title, submit = Purpose.VERIFY, "Confirm your address", "Confirm and sign in"

    async def redeemed(self, redeemed: tokens.Redeemed, newly_verified: bool) -> None:
        if newly_verified:
            account = await accounts.by_id(self.common.engine, redeemed.user_id)
            await self.mailer.send("welcome", account.email, trigger=account.id, user_id=account.id)


class ResetOpen(EmailedLinkOpen):
    purpose, title, submit = Purpose.RESET, "Choose a new password", "Save the new password"
    fields = NEW_PASSWORD

    async def post(self) -> None:
        try:
            self.new_password = rules.check_password(self.get_body_argument("password", ""))
        except InvalidInput as exc:
            return self.form(self.title, self.fields, self.submit, action=self.request.path,
                             hidden={"token": self.get_body_argument("token", "")}, error=str(exc),
                             status=400)
        await super().post()

    async def redeemed(self, redeemed: tokens.Redeemed, newly_verified: bool) -> None:
        engine = self.common.engine
        await accounts.set_password(engine, redeemed.user_id,
                                    await passwords.hash_password(self.new_password))
        await sessions.end_others(engine, redeemed.user_id, None)   # whoever knew the old one


class AccountPage(AccountHandler):
    async def get(self) -> None:
        account = await self.signed_in_account()
        await self.show(account)

    async def show(self, account: accounts.Account, notice: str | None = None,
                   error: str | None = None, status: int = 200) -> None:
        self.set_status(status)
        current = self.session_token()
        self.render("account.html", account=account, notice=notice, error=error,
                    sessions=await sessions.of_user(self.common.engine, account.id),
                    current=digest(current) if current else None)

    async def check_password(self, account: accounts.Account) -> bool:
        """The account's password (or, for an account without one, its address) as typed."""
        await self.spend_attempt(f"email:{account.email}")
        given = self.get_body_argument("current", "")
        if account.password_hash is None:
            return given.strip().lower() == account.email
        return await passwords.verify_password(account.password_hash, given)

    async def confirmed(self, account: accounts.Account, parse: Callable[[], str]) -> str | None:
        """The form's parsed value once the current password was typed right; else None, with
        the page shown again saying what was wrong."""
        try:
            value = parse()
        except InvalidInput as exc:
            await self.show(account, error=str(exc), status=400)
            return None
        if not await self.check_password(account):
            await self.show(account, error="The current password is not right.", status=400)
            return None
        return value


class PasswordChange(AccountPage):
    async def post(self) -> None:
        account = await self.signed_in_account()
        new = await self.confirmed(
            account, lambda: rules.check_password(self.get_body_argument("password", "")))
        if new is None:
            return
        await accounts.set_password(self.common.engine, account.id, await passwords.hash_password(new))
        ended = await sessions.end_others(self.common.engine, account.id, self.session_token())
        await self.show(await accounts.by_id(self.common.engine, account.id),
                        notice=f"Password changed; {ended} other session(s) logged out.")


class EmailChange(AccountPage):
    """A new address takes effect once the link sent to it is used; the answer is the same
    whether another account has that address or not."""

    async def post(self) -> None:
        account = await self.signed_in_account()
        new_email = await self.confirmed(
            account, lambda: rules.normalize_email(self.get_body_argument("email", "")))
        if new_email is None:
            return
        await self.show(account, notice=f"To use {new_email}, open the link we are sending to it. "
                                        f"Until then, {account.email} stays.")
        if new_email != account.email and await accounts.by_email(self.common.engine, new_email) is None:
            await self.email_link("change", Purpose.CHANGE, "/account/email/open", account,
                                  new_email=new_email)


class EmailChangeOpen(EmailedLinkOpen):
    purpose, title, submit = Purpose.CHANGE, "Confirm your new address", "Use this address"

    async def redeemed(self, redeemed: tokens.Redeemed, newly_verified: bool) -> None:
        try:
            await accounts.change_email(self.common.engine, redeemed.user_id, redeemed.new_email)
        except accounts.AddressTaken:    # told only to whoever holds that address's link
            raise tornado.web.HTTPError(409, "Another account took that address meanwhile.") from None
        await sessions.end_others(self.common.engine, redeemed.user_id, None)


class EndOtherSessions(AccountPage):
    async def post(self) -> None:
        account = await self.signed_in_account()
        ended = await sessions.end_others(self.common.engine, account.id, self.session_token())
        await self.show(account, notice=f"{ended} other session(s) logged out.")


class DeleteAccount(AccountPage):
    async def post(self) -> None:
        account = await self.signed_in_account()
        if not await self.check_password(account):
            return await self.show(account, error="To delete the account, type its password "
                                                  "(or its address if it has none).", status=400)
        deleted = await self.deletion.delete(account.id)
        self.sign_out_cookies()
        text = "Your account, progress and run history are gone."
        if deleted.subscription_canceling:
            text += " Your subscription is being canceled; you will not be charged again."
        elif deleted.cancel_failed:
            text += (" We could not cancel your subscription just now; we will do it by hand. "
                     "Write to us if you are charged again.")
        self.message("Account deleted", text)


class Unsubscribe(AccountHandler):
    """The reminder's one-click link: works without signing in, as the link is signed."""

    async def get(self) -> None:
        user_id = unsubscribed_user(self.application.settings["cookie_secret"],
                                    self.get_query_argument("token", ""))
        if user_id is None or not await reminders.unsubscribe(self.common.engine, user_id):
            return self.message("This link does not work",
                                "Copy the whole link from the email, or sign in and ask us.", 400)
        self.message("No more reminders", "You will not get reminder emails any more.")


def routes(common: Common, limiter: CredentialLimiter, mailer: Mailer,
           deletion: AccountDeletion, flags: FeatureFlags | None = None) -> list[tuple]:
    deps: dict[str, Any] = {"common": common, "limiter": limiter, "mailer": mailer,
                            "deletion": deletion}
    signup = [(r"/signup", SignUpHandler, {**deps, "flags": flags})]
    return signup + [(path, handler, deps) for path, handler in (
        (r"/login", LoginHandler), (r"/logout", LogoutHandler),
        (r"/login/link", MagicLinkRequest), (r"/login/link/open", MagicLinkOpen),
        (r"/verify", VerifyOpen), (r"/password/reset", ResetRequest),
        (r"/password/reset/open", ResetOpen), (r"/account", AccountPage),
        (r"/account/password", PasswordChange), (r"/account/sessions", EndOtherSessions),
        (r"/account/email", EmailChange), (r"/account/email/open", EmailChangeOpen),
        (r"/account/delete", DeleteAccount), (r"/unsubscribe", Unsubscribe))]
