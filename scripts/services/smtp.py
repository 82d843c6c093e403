#!/usr/bin/env python3
"""A real SMTP server for tests and local use (aiosmtpd): writes every message it receives
to --maildir as NNNN.eml, and prints `listening HOST:PORT` once it accepts connections.

    python3 scripts/services/smtp.py --maildir /tmp/mail [--port 2525] [--user U --password P]
        [--tls starttls|tls --cert CERT.pem --key KEY.pem]

With --user/--password it advertises AUTH (LOGIN, PLAIN) and refuses other credentials, so a
client's authentication is really exercised (without --tls, over plain text). --tls starttls
requires STARTTLS before MAIL and AUTH; --tls tls speaks TLS from the first byte (SMTPS).
"""
import argparse
import asyncio
import itertools
import os
import ssl
import sys
import warnings

# Plain-text AUTH is the point of the test mode; aiosmtpd warns about it on every start.
warnings.filterwarnings("ignore")
import logging  # noqa: E402

logging.getLogger("mail.log").setLevel(logging.ERROR)

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    sys.stderr.write(
        "aiosmtpd is missing: install it with `apt-get install -y python3-aiosmtpd` "
        "(or run scripts/services/smtp.sh, which installs it)\n"
    )
    sys.exit(3)


class Maildir:
    def __init__(self, folder):
        self.folder = folder
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        tmp = os.path.join(self.folder, f".{n:04d}.tmp")
        with open(tmp, "wb") as f:
            f.write(f"X-Envelope-From: {envelope.mail_from}\r\n".encode())
            f.write(f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n".encode())
            if session.authenticated and isinstance(session.auth_data, LoginPassword):
                f.write(f"X-Authenticated-As: {session.auth_data.login.decode()}\r\n".encode())
            f.write(envelope.original_content or envelope.content)
        # Rename: a reader never sees half a message.
        os.rename(tmp, os.path.join(self.folder, f"{n:04d}.eml"))
        return "250 Message accepted for delivery"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return check


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--tls", choices=["none", "starttls", "tls"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    context = None
    if args.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    os.makedirs(args.maildir, exist_ok=True)
    handler = Maildir(args.maildir)
    options = {}
    if args.user:
        options = dict(
            authenticator=authenticator(args.user, args.password or ""),
            # Under implicit TLS aiosmtpd does not know the socket is encrypted (it only tracks
            # STARTTLS), so only STARTTLS can demand TLS before AUTH; SMTPS has it from the start.
            auth_require_tls=args.tls == "starttls",
            auth_required=True,
        )
    if args.tls == "starttls":
        options.update(tls_context=context, require_starttls=True)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="microdash-test-smtp", **options),
        args.host,
        args.port,
        ssl=context if args.tls == "tls" else None,
    )
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
