#!/usr/bin/env python3
"""Check a consign evidence bundle without consign's own code.

Usage: python3 scripts/verify_evidence.py BUNDLE

Every BLAKE3 hash comes from the `b3sum` tool and every Ed25519 check from the
`cryptography` package. docs/evidence.md describes the byte formats and what each check
proves. Exit status: 0 when every check passed, 1 when a check failed, 2 when the
bundle cannot be read or b3sum cannot run.
"""

import datetime
import itertools
import json
import re
import shutil
import signal
import subprocess
import sys
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

BUNDLE_FORMAT = "consign evidence bundle v1"
EVENT_HASH_CONTEXT = "consign 2026-12-04 stored event v1"
CHECKPOINT_CONTEXT = b"consign 2026-12-04 checkpoint v1"
POSTMARK_CONTEXT = b"consign 2026-12-04 postmark v1"

# The bundle's shape. A tuple is an integer range, an int the byte length of a hex
# string (None for any length), and a one-item list a JSON array of that item.
U32, U64, I64 = (0, 2**32 - 1), (0, 2**64 - 1), (-(2**63), 2**63 - 1)
BUNDLE = {
    "format": str,
    "delivery": str,
    "chain": U32,
    "events": [{"position": U64, "type": str, "hash": 32, "stored": None,
                "inclusion_proof": [32]}],
    "checkpoint": {"position": U64, "hash": 32, "stored": None, "tree_size": U64,
                   "root": 32, "time": I64, "key_id": str, "signature": 64},
    "postmarks": [{"submission_position": U64, "submission_hash": 32, "time": I64,
                   "document_hashes": [32], "key_id": str, "signature": 64}],
    "public_keys": dict,
}


class InvalidBundle(Exception):
    """The bundle is not usable input. The message names the field."""


def parse(value, spec, name):
    """Convert `value` to the shape `spec`, turning hex strings into bytes."""
    if isinstance(spec, dict) or spec is dict:
        if not isinstance(value, dict):
            raise InvalidBundle(
                f"{name or 'the bundle'} is invalid: expected an object")
        if spec is dict:  # public_keys maps any key id to a 32-byte key
            return {key: parse(item, 32, f"{name}.{key}")
                    for key, item in value.items()}
        for key in spec:
            if key not in value:
                raise InvalidBundle(f"{name}.{key} is missing".lstrip("."))
        return {key: parse(value[key], spec[key], f"{name}.{key}".lstrip("."))
                for key in spec}
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise InvalidBundle(f"{name} is invalid: expected an array")
        return [parse(item, spec[0], f"{name}[{i}]") for i, item in enumerate(value)]
    if isinstance(spec, tuple):
        if type(value) is not int or not spec[0] <= value <= spec[1]:
            raise InvalidBundle(
                f"{name} is invalid: expected an integer from {spec[0]} to {spec[1]}")
        return value
    if spec is str:
        if not isinstance(value, str):
            raise InvalidBundle(f"{name} is invalid: expected a string")
        return value
    if not isinstance(value, str) or not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", value):
        raise InvalidBundle(f"{name} is invalid: expected a string of hex digit pairs")
    if spec is not None and len(value) != 2 * spec:
        raise InvalidBundle(
            f"{name} is invalid: expected {2 * spec} hex digits, found {len(value)}")
    return bytes.fromhex(value)


def blake3(data, derive_key_context=None):
    """Hash `data` with b3sum, in key-derivation mode when a context is given."""
    command = ["b3sum", "--no-names", "-"]
    if derive_key_context is not None:
        command[1:1] = ["--derive-key", derive_key_context]
    result = subprocess.run(command, input=data, capture_output=True, check=True)
    return bytes.fromhex(result.stdout.decode("ascii").strip())


def read_varint(data, offset, bits):
    """Read an unsigned LEB128 varint of at most `bits` bits, as postcard writes it."""
    value = 0
    for count in range((bits + 6) // 7):
        if offset + count >= len(data):
            raise ValueError("the bytes end inside a varint")
        byte = data[offset + count]
        value |= (byte & 0x7F) << (7 * count)
        if not byte & 0x80:
            if value >= 2**bits:
                raise ValueError(f"a varint overflows {bits} bits")
            return value, offset + count + 1
    raise ValueError(f"a varint is longer than a {bits}-bit integer allows")


def read_header(stored):
    """Decode (chain, position, time) from the envelope's header or raise ValueError."""
    version, offset = read_varint(stored, 0, 16)
    if version != 1:
        raise ValueError(f"schema version {version}, expected 1")
    id_length, offset = read_varint(stored, offset, 64)
    if id_length != 16:
        raise ValueError(f"event id of {id_length} bytes, expected 16")
    chain, offset = read_varint(stored, offset + 16, 32)
    position, offset = read_varint(stored, offset, 64)
    zigzag, _ = read_varint(stored, offset + 32, 64)  # after the 32-byte previous hash
    return chain, position, (zigzag >> 1) ^ -(zigzag & 1)


def verify_inclusion(event_hash, index, tree_size, proof, root):
    """Run RFC 9162 section 2.1.3.2 with BLAKE3 leaf (0x00) and node (0x01) hashes."""
    if index >= tree_size:
        return False
    node, last = index, tree_size - 1
    value = blake3(b"\x00" + event_hash)
    for sibling in proof:
        if last == 0:
            return False
        if node & 1 or node == last:
            value = blake3(b"\x01" + sibling + value)
            while not node & 1 and node != 0:  # a last node with no sibling moves up
                node, last = node >> 1, last >> 1
        else:
            value = blake3(b"\x01" + value + sibling)
        node, last = node >> 1, last >> 1
    return last == 0 and value == root


def signature_problem(keys, key_id, message, signature):
    """Return None when the signature verifies with key `key_id`, else the reason."""
    if key_id not in keys:
        return f"key {key_id} is not in public_keys"
    try:
        Ed25519PublicKey.from_public_bytes(keys[key_id]).verify(signature, message)
    except InvalidSignature:
        return f"signature does not verify with key {key_id}"
    except ValueError as error:
        return f"public key {key_id} is not a valid Ed25519 key: {error}"
    return None


def format_utc(micros):
    try:
        moment = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=micros)
    except OverflowError:
        return f"(time {micros} is out of range)"
    return moment.isoformat(timespec="microseconds") + "Z"


def checkpoint_message(chain, checkpoint):
    return (CHECKPOINT_CONTEXT + chain.to_bytes(4, "big")
            + checkpoint["tree_size"].to_bytes(8, "big") + checkpoint["root"]
            + checkpoint["time"].to_bytes(8, "big", signed=True))


def postmark_message(chain, postmark):
    documents = postmark["document_hashes"]
    return (POSTMARK_CONTEXT + chain.to_bytes(4, "big")
            + postmark["submission_position"].to_bytes(8, "big")
            + postmark["submission_hash"]
            + postmark["time"].to_bytes(8, "big", signed=True)
            + len(documents).to_bytes(4, "big") + b"".join(documents))


def decode_event(stored):
    """Return the event hash of `stored`, its header and why the header is invalid."""
    actual = blake3(stored, EVENT_HASH_CONTEXT)
    try:
        return actual, read_header(stored), None
    except ValueError as error:
        return actual, None, f"no valid header: {error}"


# Each check_* function yields (check, problem, detail), where problem is None on
# success and detail is printed only then.


def check_keys(keys):
    for key_id, public in keys.items():
        actual = "ed25519-" + blake3(public).hex()[:16]
        problem = f"{key_id} differs from {actual}, the id of key {public.hex()}"
        yield ("key-id", None if key_id == actual else problem,
               f"{key_id} {public.hex()}")


def check_checkpoint(chain, checkpoint, keys):
    position, tree_size = checkpoint["position"], checkpoint["tree_size"]
    actual, header, header_problem = decode_event(checkpoint["stored"])
    problems = []
    if actual != checkpoint["hash"]:
        problems.append(f"the hash of the stored bytes is {actual.hex()}, "
                        f"not {checkpoint['hash'].hex()}")
    if header_problem:
        problems.append(header_problem)
    expected = (chain, position, checkpoint["time"])
    for name, found, expected_value in zip(("chain", "position", "time"),
                                           header or expected, expected):
        if found != expected_value:
            problems.append(f"the header {name} is {found}, not {expected_value}")
    if tree_size != position:
        problems.append(f"tree size {tree_size} is not position {position}")
    yield ("checkpoint-event", "; ".join(problems) or None,
           f"position {position} time {format_utc(checkpoint['time'])}")

    message = checkpoint_message(chain, checkpoint)
    problem = signature_problem(keys, checkpoint["key_id"], message,
                                checkpoint["signature"])
    yield ("checkpoint-signature", problem, f"tree size {tree_size} "
           f"root {checkpoint['root'].hex()} key {checkpoint['key_id']}")


def check_event(chain, checkpoint, event, actual, header, header_problem):
    position = event["position"]
    time = format_utc(header[2]) if header else "(no valid header)"
    print(f"event {position} {time} (type as the bundle states it, not checked here)")
    problem = (f"{position} the hash of the stored bytes is {actual.hex()}, "
               f"not {event['hash'].hex()}")
    yield ("event-hash", None if actual == event["hash"] else problem,
           f"{position} {actual.hex()}")
    if header and header[:2] != (chain, position):
        header_problem = f"the header has chain {header[0]} position {header[1]}"
    yield ("event-place", header_problem and f"{position} {header_problem}",
           f"{position} chain {chain}")
    included = verify_inclusion(actual, position, checkpoint["tree_size"],
                                event["inclusion_proof"], checkpoint["root"])
    problem = (f"{position} the proof does not lead from the stored bytes to the root "
               f"of the {checkpoint['tree_size']}-event tree")
    yield ("inclusion", None if included else problem,
           f"{position} in the {checkpoint['tree_size']}-event tree")


def check_postmark(chain, keys, postmark, events):
    position = postmark["submission_position"]
    message = postmark_message(chain, postmark)
    problem = signature_problem(keys, postmark["key_id"], message,
                                postmark["signature"])
    yield ("postmark-signature", problem and f"{position} {problem}",
           f"{position} {len(postmark['document_hashes'])} documents")
    actual, header, _ = events.get(position, (None, None, None))
    problem = None
    if actual is None:
        problem = "the bundle has no event at this position"
    elif actual != postmark["submission_hash"]:
        problem = f"the event hash {actual.hex()} is not the submission hash"
    elif header is None or header[2] != postmark["time"]:
        problem = "the event time is not the postmark time"
    yield ("postmark-submission", problem and f"{position} {problem}",
           f"{position} {format_utc(postmark['time'])}")


def run_checks(bundle):
    """Print one line per check and return the number of failed checks."""
    chain, checkpoint = bundle["chain"], bundle["checkpoint"]
    keys = bundle["public_keys"]
    decoded = [decode_event(event["stored"]) for event in bundle["events"]]
    events = {event["position"]: found
              for event, found in zip(bundle["events"], decoded)}
    checks = [check_keys(keys), check_checkpoint(chain, checkpoint, keys)]
    positions = [event["position"] for event in bundle["events"]]
    if not positions:
        checks.append([("events", "the bundle contains no events", "")])
    elif any(earlier >= later for earlier, later in zip(positions, positions[1:])):
        checks.append([("events", "the events are not in strictly increasing position "
                        "order: one is repeated or moved", "")])
    else:
        checks.append([("events", None, f"{len(positions)} in position order")])
    checks += [check_event(chain, checkpoint, event, *found)
               for event, found in zip(bundle["events"], decoded)]
    checks += [check_postmark(chain, keys, postmark, events)
               for postmark in bundle["postmarks"]]
    # The generators run one after another, so each event's line comes before its
    # checks.
    failures = 0
    for check, problem, detail in itertools.chain(*checks):
        failures += problem is not None
        print(f"{'FAIL' if problem else 'ok':<4} {check} {problem or detail}")
    return failures


def main(arguments):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # end quietly when piped into head
    if len(arguments) != 1:
        print("usage: python3 verify_evidence.py BUNDLE", file=sys.stderr)
        return 2
    if shutil.which("b3sum") is None:
        print("b3sum not found: install it (on Debian: apt-get install b3sum)",
              file=sys.stderr)
        return 2
    try:
        with open(arguments[0], encoding="utf-8") as file:
            text = file.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidBundle(f"the file is not JSON: {error}") from None
        bundle = parse(data, BUNDLE, "")
        if bundle["format"] != BUNDLE_FORMAT:
            raise InvalidBundle(f"format is invalid: expected {BUNDLE_FORMAT!r}, "
                                f"found {bundle['format']!r}")
        try:
            uuid.UUID(bundle["delivery"])
        except ValueError:
            raise InvalidBundle(f"delivery is invalid: expected a UUID, "
                                f"found {bundle['delivery']!r}") from None
    except (OSError, UnicodeDecodeError, InvalidBundle) as error:
        print(f"cannot check {arguments[0]}: {error}", file=sys.stderr)
        return 2
    print(f"chain {bundle['chain']}; the bundle names delivery {bundle['delivery']}, "
          "which this script does not check (consign evidence verify does)")
    try:
        failures = run_checks(bundle)
    except subprocess.CalledProcessError as error:
        stderr = error.stderr.decode(errors="replace").strip()
        print(f"b3sum failed with exit status {error.returncode}: {stderr}",
              file=sys.stderr)
        return 2
    print(f"{failures} checks failed" if failures else
          "every check passed: each listed event is in the signed tree, unchanged; a bundle "
          "can leave events out, and this script does not tie events to the delivery")
    print("The signatures were checked with the public keys in the bundle; compare "
          "them with the keys the operator publishes.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
