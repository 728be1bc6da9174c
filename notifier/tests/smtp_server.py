#!/usr/bin/env python3
"""SMTP server for the notifier's integration tests, built on aiosmtpd.

Usage: smtp_server.py PORT DIRECTORY [--auth USER:PASSWORD]

Listens on 127.0.0.1:PORT (0 picks a free port) and prints "PORT <number>" on stdout
once it accepts connections. Each accepted message is saved as DIRECTORY/NNNN.eml with
the exact bytes of SMTP DATA, next to DIRECTORY/NNNN.json with the envelope (mail_from,
rcpt_tos, mail_options, auth_login). The .json file is written first and each file
appears by an atomic rename, so a reader that sees NNNN.eml also finds NNNN.json.

Replies at RCPT TO depend on the local part of the address:
  defer*   451 4.2.0, a transient failure
  reject*  550 5.1.1, a permanent failure
  drop*    the connection is closed without a reply
  anything else is accepted.

With --auth, AUTH PLAIN or LOGIN with exactly these credentials is required before
MAIL FROM, on the plain connection. The server runs until it is killed.
"""

import argparse
import asyncio
import itertools
import json
import os
import sys
import warnings

# aiosmtpd warns that AUTH without TLS is unsafe; --auth wants exactly that on loopback,
# and the warning would clutter the log the tests show when the server fails.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    print(
        "aiosmtpd is not installed for " + sys.executable + "; install it with: "
        + sys.executable + " -m pip install aiosmtpd",
        file=sys.stderr,
    )
    sys.exit(3)


class SavingHandler:
    """Applies the reply rules at RCPT TO and saves each accepted message."""

    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local_part = address.rsplit("@", 1)[0].lower()
        if local_part.startswith("defer"):
            return "451 4.2.0 Mailbox temporarily unavailable, try again later"
        if local_part.startswith("reject"):
            return "550 5.1.1 Mailbox does not exist"
        if local_part.startswith("drop"):
            server.transport.abort()
            return "421 4.3.0 Connection dropped"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient ok"

    async def handle_DATA(self, server, session, envelope):
        name = "%04d" % next(self.counter)
        login = None
        if isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode("utf-8")
        details = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "auth_login": login,
        }
        write_atomically(
            os.path.join(self.directory, name + ".json"),
            json.dumps(details, indent=2).encode("utf-8"),
        )
        write_atomically(os.path.join(self.directory, name + ".eml"), envelope.original_content)
        return "250 2.0.0 Message accepted as " + name


class FixedCredentials:
    """aiosmtpd authenticator that accepts one user name and password."""

    def __init__(self, login, password):
        self.login = login.encode("utf-8")
        self.password = password.encode("utf-8")

    def __call__(self, server, session, envelope, mechanism, auth_data):
        accepted = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.login
            and auth_data.password == self.password
        )
        if accepted:
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False makes aiosmtpd send its 535 reply; with the default handled=True
        # it would send nothing and leave the client waiting.
        return AuthResult(success=False, handled=False)


def write_atomically(path, data):
    temporary = path + ".part"
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.rename(temporary, path)


async def serve(port, directory, credentials):
    handler = SavingHandler(directory)
    loop = asyncio.get_running_loop()

    def make_protocol():
        if credentials is None:
            return SMTP(handler, hostname="smtp.test", loop=loop)
        return SMTP(
            handler,
            hostname="smtp.test",
            loop=loop,
            authenticator=FixedCredentials(*credentials),
            auth_required=True,
            # The tests run on loopback without certificates.
            auth_require_tls=False,
        )

    server = await loop.create_server(make_protocol, host="127.0.0.1", port=port)
    chosen_port = server.sockets[0].getsockname()[1]
    print("PORT %d" % chosen_port, flush=True)
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int, help="TCP port on 127.0.0.1, or 0 for a free one")
    parser.add_argument("directory", help="existing directory that receives the messages")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="require these credentials")
    arguments = parser.parse_args()

    credentials = None
    if arguments.auth is not None:
        login, separator, password = arguments.auth.partition(":")
        if not separator:
            parser.error("--auth expects USER:PASSWORD")
        credentials = (login, password)

    if not os.path.isdir(arguments.directory):
        parser.error("directory not found: " + arguments.directory)
    asyncio.run(serve(arguments.port, arguments.directory, credentials))


if __name__ == "__main__":
    main()
