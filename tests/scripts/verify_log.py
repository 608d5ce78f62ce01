#!/usr/bin/env python3
"""Independent verifier for etal's sealed event history.

The Rust service seals the PostgreSQL `events` table into an RFC 6962 Merkle
tree and publishes C2SP signed checkpoints (Ed25519).  This script re-derives
everything from the raw rows with nothing but the Python standard library (and
the `cryptography` package, imported only when a signature has to be checked),
so that a bug in the Rust code cannot hide itself by being shared with the
checker.

Subcommands (see `verify_log.py <cmd> --help`):

  selftest     check the Merkle, JCS and signed-note code against published vectors
  log          recompute the tree over the events table, optionally check a checkpoint
  inclusion    verify an inclusion proof (RFC 9162 section 2.1.3.2)
  consistency  verify a consistency proof (RFC 9162 section 2.1.4.2)
  leaf         print the leaf hash of one event row

Exit status: 0 verified; 3 something does not verify (mismatch, bad proof, bad
or badly signed checkpoint); 2 the check could not run (usage, unreadable
input, psql failure, missing `cryptography`); 1 selftest failure.

Definitions shared with the Rust side:

  leaf hash    SHA-256(0x00 || leaf data)
  node hash    SHA-256(0x01 || left || right)
  empty root   SHA-256("")
  leaf data    UTF-8 of the RFC 8785 (JCS) form of
               {"aggregate_id", "aggregate_type", "event_type", "event_version",
                "global_position", "metadata_sha256", "payload_sha256",
                "recorded_at", "sequence", "transaction_id"}
               where *_sha256 is the lowercase hex SHA-256 of JCS(payload|metadata)
               and recorded_at is "YYYY-MM-DDTHH:MM:SS.ffffffZ" in UTC.
  leaf order   ORDER BY transaction_id, global_position (docs/decisions/0001).
"""

import argparse
import base64
import binascii
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_SELFTEST_FAILED = 1
EXIT_CANNOT_RUN = 2
EXIT_MISMATCH = 3

HASH_LEN = 32
EM_DASH = "\u2014"
ED25519_TYPE = 0x01

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VECTORS = REPO_ROOT / "tests" / "data" / "rfc6962_vectors.json"


class CannotRun(Exception):
    """The check could not be carried out (exit 2)."""


class Invalid(Exception):
    """Something was checked and does not verify (exit 3)."""


# --------------------------------------------------------------------------
# RFC 6962 Merkle tree
# --------------------------------------------------------------------------

def sha256(data):
    return hashlib.sha256(data).digest()


def leaf_hash(data):
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return sha256(b"\x00" + data)


def node_hash(left, right):
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right)


EMPTY_ROOT = sha256(b"")


def split_point(n):
    """Largest power of two strictly smaller than n (n >= 2)."""
    assert n >= 2
    return 1 << ((n - 1).bit_length() - 1)


def mth(hashes, lo=0, hi=None):
    """MTH over leaf hashes[lo:hi], straight from the RFC 6962 recursion.

    Takes leaf *hashes* (not leaf data) so a tree is hashed once per leaf.
    Recursion depth is log2(n); used for proofs and as the reference in selftest.
    """
    if hi is None:
        hi = len(hashes)
    n = hi - lo
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[lo]
    k = split_point(n)
    return node_hash(mth(hashes, lo, lo + k), mth(hashes, lo + k, hi))


def root_of(hashes):
    """MTH over all leaf hashes in one pass, without recursion.

    Keeps a stack of complete subtrees (sizes strictly decreasing powers of
    two, which is exactly how RFC 6962 splits the tree), merging equal-sized
    neighbours as leaves arrive; the incomplete right edge is folded at the end
    from right to left.  Equal to mth(hashes) (checked by selftest).
    """
    stack = []  # [(size, hash)]
    for h in hashes:
        size = 1
        while stack and stack[-1][0] == size:
            left_size, left = stack.pop()
            h = node_hash(left, h)
            size += left_size
        stack.append((size, h))
    if not stack:
        return EMPTY_ROOT
    root = stack[-1][1]
    for _, h in reversed(stack[:-1]):
        root = node_hash(h, root)
    return root


def inclusion_path(hashes, m, lo=0, hi=None):
    """RFC 6962 PATH(m, D[lo:hi]): sibling hashes from leaf m up to the root."""
    if hi is None:
        hi = len(hashes)
    n = hi - lo
    if not 0 <= m < n:
        raise ValueError("leaf index %d outside tree of size %d" % (m, n))
    if n == 1:
        return []
    k = split_point(n)
    if m < k:
        return inclusion_path(hashes, m, lo, lo + k) + [mth(hashes, lo + k, hi)]
    return inclusion_path(hashes, m - k, lo + k, hi) + [mth(hashes, lo, lo + k)]


def consistency_proof(hashes, m, n=None):
    """RFC 6962 PROOF(m, D[n]) for 0 < m <= n (empty when m == n)."""
    if n is None:
        n = len(hashes)
    if not 0 < m <= n <= len(hashes):
        raise ValueError("bad consistency sizes %d, %d" % (m, n))

    def subproof(m, lo, hi, complete):
        n = hi - lo
        if m == n:
            # The old tree is this whole subtree: its root is known to the
            # verifier only if it is the old tree's root itself.
            return [] if complete else [mth(hashes, lo, hi)]
        k = split_point(n)
        if m <= k:
            return subproof(m, lo, lo + k, complete) + [mth(hashes, lo + k, hi)]
        return subproof(m - k, lo + k, hi, False) + [mth(hashes, lo, lo + k)]

    return subproof(m, 0, n, True)


def verify_inclusion(leaf_index, tree_size, leaf, path, root):
    """RFC 9162 section 2.1.3.2, step by step."""
    # 1. leaf_index must be inside the tree.
    if leaf_index < 0 or leaf_index >= tree_size:
        return False
    # 2. fn is the leaf's index, sn the index of the last leaf.
    fn, sn = leaf_index, tree_size - 1
    # 3. r starts as the leaf hash.
    r = leaf
    # 4. fold in each path element.
    for p in path:
        # a. a path longer than the tree is tall.
        if sn == 0:
            return False
        # b. p is a left sibling when fn is a right child, or when fn is the
        #    last node of its level (a right edge with no right sibling).
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # skip the levels where this node had no right sibling
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        # c. one level up.
        fn >>= 1
        sn >>= 1
    # 5. the path must reach the top exactly, at the expected root.
    return sn == 0 and r == root


def verify_consistency(old_size, new_size, old_root, new_root, proof):
    """RFC 9162 section 2.1.4.2, plus the trivial cases the algorithm excludes."""
    if old_size < 0 or new_size < old_size:
        return False
    if old_size == new_size:
        # Same tree: nothing to prove, the roots must agree.
        return not proof and old_root == new_root
    if old_size == 0:
        # The empty tree is a prefix of every tree.
        return not proof and old_root == EMPTY_ROOT
    # 1. a non-trivial proof is never empty.
    if not proof:
        return False
    path = list(proof)
    # 2. the old root is itself a node of the new tree when old_size is a
    #    power of two; the proof then omits it.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3.
    fn, sn = old_size - 1, new_size - 1
    # 4. climb to the top of the old tree's rightmost complete subtree.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr rebuilds the old root, sr the new one.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        # a.
        if sn == 0:
            return False
        # b.
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        # c.
        fn >>= 1
        sn >>= 1
    # 7.
    return sn == 0 and fr == old_root and sr == new_root


# --------------------------------------------------------------------------
# RFC 8785 JSON Canonicalization Scheme
# --------------------------------------------------------------------------

# Characters JSON.stringify escapes: '"', '\', and every C0 control.
_JCS_ESCAPE_RE = re.compile(r'[\x00-\x1f"\\]')
_JCS_SHORT_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f",
    "\n": "\\n", "\r": "\\r", "\t": "\\t",
}
_SURROGATE_RE = re.compile("[\ud800-\udfff]")

# RFC 8785 treats every number as an IEEE-754 double.  Integers up to 2**53 in
# magnitude are exact doubles whose ECMAScript form is their plain digits; larger
# ones are first rounded to the nearest double (as the Rust side does too).
_EXACT_INT_LIMIT = 1 << 53


class JcsError(ValueError):
    """A value outside the I-JSON data model RFC 8785 accepts."""


def _jcs_escape_char(match):
    ch = match.group(0)
    return _JCS_SHORT_ESCAPES.get(ch) or "\\u%04x" % ord(ch)


def jcs_string(s):
    """A JSON string as ECMAScript JSON.stringify writes it (RFC 8785 3.2.2.2)."""
    if _SURROGATE_RE.search(s):
        raise JcsError("string contains a lone surrogate: %r" % s)
    return '"' + _JCS_ESCAPE_RE.sub(_jcs_escape_char, s) + '"'


def es_number(x):
    """ECMAScript Number.prototype.toString for a finite double (RFC 8785 3.2.2.3).

    Python's repr() gives the shortest digit string that round-trips (the same
    digits ECMAScript picks); only the layout differs, so we take the digits
    and the decimal exponent from repr() and apply ECMA-262 Number::toString.
    """
    if not math.isfinite(x):
        raise JcsError("%r is not a finite number" % x)
    if x == 0:
        return "0"  # also -0
    sign = "-" if x < 0 else ""
    mantissa, _, exp = repr(abs(x)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = int_part + frac_part
    # value = 0.<digits> * 10**point
    point = len(int_part) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    # ECMA-262: value = digits * 10**(n - k), k = number of digits
    k, n = len(digits), point
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        exp_text = ("+" if e >= 0 else "-") + str(abs(e))
        if k == 1:
            text = digits + "e" + exp_text
        else:
            text = digits[0] + "." + digits[1:] + "e" + exp_text
    return sign + text


def _utf16_key(s):
    # Big-endian UTF-16 bytes compare in the same order as the code units.
    return s.encode("utf-16-be", "surrogatepass")


def jcs(value):
    """The RFC 8785 canonical form of a JSON value (as parsed by json.loads), as str."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if -_EXACT_INT_LIMIT <= value <= _EXACT_INT_LIMIT:
            return str(value)
        try:
            return es_number(float(value))
        except OverflowError:
            raise JcsError("integer %d does not fit an IEEE-754 double" % value)
    if isinstance(value, float):
        return es_number(value)
    if isinstance(value, str):
        return jcs_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise JcsError("object key %r is not a string" % (key,))
        members = sorted(value.items(), key=lambda kv: _utf16_key(kv[0]))
        return "{" + ",".join(jcs_string(k) + ":" + jcs(v) for k, v in members) + "}"
    raise JcsError("%r is not a JSON value" % (value,))


def jcs_bytes(value):
    return jcs(value).encode("utf-8")


def parse_json_strict(text):
    """json.loads, but rejecting NaN/Infinity literals and overflowing numbers."""
    def bad_constant(name):
        raise JcsError("%s is not JSON" % name)

    def parse_float(s):
        f = float(s)
        if not math.isfinite(f):
            raise JcsError("number %s does not fit an IEEE-754 double" % s)
        return f

    return json.loads(text, parse_constant=bad_constant, parse_float=parse_float)


# --------------------------------------------------------------------------
# Event rows -> leaves
# --------------------------------------------------------------------------

RECORDED_AT_RE = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z\Z")
_TEXT_COLUMNS = ("aggregate_type", "aggregate_id", "event_type", "event_version")
_INT_COLUMNS = ("sequence", "global_position", "transaction_id")


def event_leaf_object(row):
    """The object whose JCS form is an event's leaf data."""
    for col in _TEXT_COLUMNS + _INT_COLUMNS + ("payload", "metadata", "recorded_at"):
        if col not in row:
            raise ValueError("event row lacks %r" % col)
    for col in _TEXT_COLUMNS:
        if not isinstance(row[col], str):
            raise ValueError("%s must be a string, got %r" % (col, row[col]))
    for col in _INT_COLUMNS:
        v = row[col]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError("%s must be a non-negative integer, got %r" % (col, v))
    recorded_at = row["recorded_at"]
    if not isinstance(recorded_at, str) or not RECORDED_AT_RE.match(recorded_at):
        raise ValueError("recorded_at must look like 2026-12-02T10:00:00.000001Z, got %r"
                         % (recorded_at,))
    return {
        "aggregate_id": row["aggregate_id"],
        "aggregate_type": row["aggregate_type"],
        "event_type": row["event_type"],
        "event_version": row["event_version"],
        "global_position": row["global_position"],
        "metadata_sha256": hashlib.sha256(jcs_bytes(row["metadata"])).hexdigest(),
        "payload_sha256": hashlib.sha256(jcs_bytes(row["payload"])).hexdigest(),
        "recorded_at": recorded_at,
        "sequence": row["sequence"],
        "transaction_id": row["transaction_id"],
    }


def event_leaf_data(row):
    """Leaf data of an event row: UTF-8 of JCS(event_leaf_object(row))."""
    return jcs_bytes(event_leaf_object(row))


def event_leaf_hash(row):
    return leaf_hash(event_leaf_data(row))


# One JSON object per row, so psql's unaligned output parses line by line.
# Line breaks inside strings come out as \n escapes, never raw.
_ROW_SELECT = """SELECT json_build_object(
    'aggregate_type', aggregate_type,
    'aggregate_id', aggregate_id,
    'sequence', sequence,
    'event_type', event_type,
    'event_version', event_version,
    'payload', payload,
    'metadata', metadata,
    'global_position', global_position,
    'transaction_id', transaction_id::text::bigint,
    'recorded_at', to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
)::text
FROM events"""


def events_sql(limit=None, stable_only=False):
    sql = _ROW_SELECT
    if stable_only:
        # Only rows no running transaction can still precede (ADR 0001).
        sql += "\nWHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
    sql += "\nORDER BY transaction_id, global_position"
    if limit is not None:
        sql += "\nLIMIT %d" % limit
    return sql


def rows_from_psql(dsn, limit=None, stable_only=False, psql="psql"):
    """Yield event rows (dicts) from the database, in leaf order."""
    cmd = [psql, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", dsn,
           "-c", events_sql(limit, stable_only)]
    env = dict(os.environ, PGCLIENTENCODING="UTF8")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
    except OSError as e:
        raise CannotRun("cannot run %s: %s" % (psql, e))
    rows = []
    try:
        # Iterating the binary stream splits on b"\n" only: JSON text may hold
        # raw U+2028 and friends, which str.splitlines() would break on.
        for line in proc.stdout:
            line = line.rstrip(b"\n")
            if line:
                rows.append(parse_json_strict(line.decode("utf-8")))
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        status = proc.wait()
    if status != 0:
        raise CannotRun("psql failed (exit %d): %s" % (status, err.strip()))
    return rows


def rows_from_file(path):
    """Event rows from a JSON-lines file (one row object per line), for tests."""
    rows = []
    for line in read_input(path).split(b"\n"):
        if line.strip():
            rows.append(parse_json_strict(line.decode("utf-8")))
    return rows


# --------------------------------------------------------------------------
# C2SP signed notes and checkpoints
# --------------------------------------------------------------------------

_KEY_NAME_BAD_RE = re.compile(r"[\s+]")
_MAX_SIGNATURES = 100


def b64decode_strict(text, what):
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise Invalid("%s is not valid base64: %r" % (what, text))


def check_key_name(name, what):
    if not name or _KEY_NAME_BAD_RE.search(name):
        raise Invalid("%s %r is empty or contains a space or '+'" % (what, name))


def key_id(name, sig_type, public_key):
    """C2SP key ID: SHA-256(name || 0x0A || type || public key)[:4]."""
    return sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key)[:4]


def parse_vkey(text):
    """'<name>+<hex key id>+<base64(type || key)>' -> (name, key id, public key)."""
    # The name has no '+', the base64 key may: split at the first two only.
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise CannotRun("verifier key must be name+keyid+key, got %r" % text)
    name, id_hex, key_b64 = parts
    try:
        check_key_name(name, "verifier key name")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", id_hex):
            raise Invalid("verifier key id %r is not 8 hex digits" % id_hex)
        material = b64decode_strict(key_b64, "verifier key")
    except Invalid as e:
        raise CannotRun(str(e))
    if len(material) != 33 or material[0] != ED25519_TYPE:
        raise CannotRun("verifier key is not an Ed25519 key (0x01 || 32 bytes)")
    public_key = material[1:]
    declared = bytes.fromhex(id_hex)
    if key_id(name, ED25519_TYPE, public_key) != declared:
        raise CannotRun("verifier key id %s does not match its name and key" % id_hex)
    return name, declared, public_key


def parse_signed_note(raw):
    """Split a signed note into (text bytes, [(key name, key id, signature)]).

    The text includes its final newline; the signatures follow the last blank
    line.  Raises Invalid on anything the C2SP signed-note format forbids.
    """
    try:
        note = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("note is not valid UTF-8")
    if re.search(r"[\x00-\x09\x0b-\x1f]", note):
        raise Invalid("note contains a control character other than newline")
    if not note.endswith("\n"):
        raise Invalid("note does not end with a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise Invalid("note has no blank line before its signatures")
    text = note[:cut + 1]
    sig_lines = note[cut + 2:].split("\n")[:-1]
    if not sig_lines:
        raise Invalid("note has no signatures")
    if len(sig_lines) > _MAX_SIGNATURES:
        raise Invalid("note has more than %d signatures" % _MAX_SIGNATURES)
    signatures = []
    for line in sig_lines:
        if not line.startswith(EM_DASH + " "):
            raise Invalid("malformed signature line %r" % line)
        fields = line[2:].split(" ")
        if len(fields) != 2:
            raise Invalid("malformed signature line %r" % line)
        name, sig_b64 = fields
        check_key_name(name, "signature key name")
        sig = b64decode_strict(sig_b64, "signature")
        if len(sig) < 5:
            raise Invalid("signature by %s is too short" % name)
        signatures.append((name, sig[:4], sig[4:]))
    return text.encode("utf-8"), signatures


def ed25519_verify(public_key, signature, message):
    """True if the Ed25519 signature is valid; CannotRun without `cryptography`."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise CannotRun("checking an Ed25519 signature needs the Python package "
                        "'cryptography' (pip install cryptography); it is not installed "
                        "for %s" % sys.executable)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        return True
    except InvalidSignature:
        return False


def verify_signed_note(raw, vkey_text):
    """Check the note is signed by vkey; return its text (bytes)."""
    name, kid, public_key = parse_vkey(vkey_text)
    text, signatures = parse_signed_note(raw)
    ours = [sig for n, i, sig in signatures if n == name and i == kid]
    if not ours:
        raise Invalid("no signature by key %s+%s" % (name, kid.hex()))
    for sig in ours:
        if len(sig) != 64 or not ed25519_verify(public_key, sig, text):
            raise Invalid("bad signature by key %s+%s" % (name, kid.hex()))
    return text


def parse_checkpoint_text(text):
    """C2SP tlog-checkpoint text -> (origin, tree size, root hash bytes, extensions)."""
    lines = text.decode("utf-8").split("\n")
    if lines[-1] != "":
        raise Invalid("checkpoint text does not end with a newline")
    lines = lines[:-1]
    if len(lines) < 3 or any(line == "" for line in lines):
        raise Invalid("checkpoint text must be at least three non-empty lines")
    origin, size_text, root_b64 = lines[:3]
    if not re.fullmatch(r"0|[1-9][0-9]*", size_text):
        raise Invalid("checkpoint tree size %r is not a decimal number" % size_text)
    root = b64decode_strict(root_b64, "checkpoint root hash")
    if len(root) != HASH_LEN:
        raise Invalid("checkpoint root hash is %d bytes, not %d" % (len(root), HASH_LEN))
    return origin, int(size_text), root, lines[3:]


def verify_checkpoint(raw, vkey_text):
    """Signature first, then the body: (origin, tree size, root)."""
    text = verify_signed_note(raw, vkey_text)
    origin, size, root, _extensions = parse_checkpoint_text(text)
    return origin, size, root


# --------------------------------------------------------------------------
# Input helpers
# --------------------------------------------------------------------------

def read_input(path):
    """Bytes of a file, or of stdin for '-'."""
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CannotRun("cannot read %s: %s" % (path, e))


def load_json_input(path):
    try:
        return parse_json_strict(read_input(path).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CannotRun("%s is not valid JSON: %s" % (path, e))


def hash_from_hex(text, what):
    if not isinstance(text, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise CannotRun("%s must be 64 hex digits, got %r" % (what, text))
    return bytes.fromhex(text)


def hash_from_text(text, what):
    """A hash given as 64 hex digits or as base64."""
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        h = b64decode_strict(text, what)
    except Invalid as e:
        raise CannotRun(str(e))
    if len(h) != HASH_LEN:
        raise CannotRun("%s must be 32 bytes" % what)
    return h


def size_field(obj, key):
    v = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise CannotRun("%r must be a non-negative integer, got %r" % (key, v))
    return v


def hash_list_field(obj, key):
    v = obj.get(key)
    if not isinstance(v, list):
        raise CannotRun("%r must be a list of hex hashes" % key)
    return [hash_from_hex(h, "%s[%d]" % (key, i)) for i, h in enumerate(v)]


def b64(h):
    return base64.b64encode(h).decode("ascii")


# --------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------

def cmd_log(args):
    tree_size = args.tree_size
    expected_root = hash_from_text(args.root, "--root") if args.root else None
    if args.checkpoint:
        if not args.vkey:
            raise CannotRun("--checkpoint needs --vkey")
        vkey_text = args.vkey
        if os.path.isfile(vkey_text):
            vkey_text = read_input(vkey_text).decode("utf-8")
        origin, cp_size, cp_root = verify_checkpoint(read_input(args.checkpoint), vkey_text)
        if args.origin is not None and origin != args.origin:
            raise Invalid("checkpoint origin is %r, expected %r" % (origin, args.origin))
        if tree_size is not None and tree_size != cp_size:
            raise Invalid("checkpoint tree size is %d, expected %d" % (cp_size, tree_size))
        if expected_root is not None and expected_root != cp_root:
            raise Invalid("checkpoint root is %s, expected %s" % (b64(cp_root), b64(expected_root)))
        tree_size, expected_root = cp_size, cp_root

    if args.rows:
        rows = rows_from_file(args.rows)
        if tree_size is not None:
            rows = rows[:tree_size]
    else:
        rows = rows_from_psql(args.dsn, tree_size, args.stable_only, args.psql)
    leaves = []
    for i, row in enumerate(rows):
        try:
            leaves.append(event_leaf_hash(row))
        except ValueError as e:
            raise CannotRun("event %d (global_position %r): %s"
                            % (i, row.get("global_position") if isinstance(row, dict) else None, e))
    if tree_size is None:
        tree_size = len(leaves)

    if args.leaves:
        expected = []
        for n, line in enumerate(read_input(args.leaves).decode("utf-8").split("\n")):
            if line.strip():
                expected.append(hash_from_hex(line.strip(), "%s line %d" % (args.leaves, n + 1)))
        expected = expected[:tree_size]
        for i in range(min(len(expected), len(leaves))):
            if expected[i] != leaves[i]:
                raise Invalid("mismatch at leaf %d" % i)
        if len(expected) != tree_size or len(leaves) != tree_size:
            raise Invalid("mismatch at leaf %d" % min(len(expected), len(leaves)))

    if len(leaves) < tree_size:
        raise Invalid("mismatch: the log has %d events, the tree size is %d"
                      % (len(leaves), tree_size))
    root = root_of(leaves)
    if expected_root is not None and root != expected_root:
        print("computed root %s, expected %s over %d leaves"
              % (b64(root), b64(expected_root), tree_size), file=sys.stderr)
        raise Invalid("root mismatch")
    print("ok %d %s" % (tree_size, b64(root)))
    return EXIT_OK


def cmd_inclusion(args):
    obj = load_json_input(args.file)
    if not isinstance(obj, dict):
        raise CannotRun("inclusion proof must be a JSON object")
    index = size_field(obj, "leaf_index")
    size = size_field(obj, "tree_size")
    leaf = hash_from_hex(obj.get("leaf_hash"), "leaf_hash")
    path = hash_list_field(obj, "path")
    root = hash_from_hex(obj.get("root"), "root")
    if not verify_inclusion(index, size, leaf, path, root):
        raise Invalid("inclusion proof invalid")
    print("ok")
    return EXIT_OK


def cmd_consistency(args):
    obj = load_json_input(args.file)
    if not isinstance(obj, dict):
        raise CannotRun("consistency proof must be a JSON object")
    old_size = size_field(obj, "old_size")
    new_size = size_field(obj, "new_size")
    old_root = hash_from_hex(obj.get("old_root"), "old_root")
    new_root = hash_from_hex(obj.get("new_root"), "new_root")
    proof = hash_list_field(obj, "proof")
    if not verify_consistency(old_size, new_size, old_root, new_root, proof):
        raise Invalid("consistency proof invalid")
    print("ok")
    return EXIT_OK


def cmd_leaf(args):
    text = args.row
    if text == "-":
        text = read_input("-").decode("utf-8")
    try:
        row = parse_json_strict(text)
        if not isinstance(row, dict):
            raise ValueError("the row must be a JSON object")
        data = event_leaf_data(row)
    except ValueError as e:
        raise CannotRun("bad event row: %s" % e)
    if args.data:
        print(data.decode("utf-8"))
    print(leaf_hash(data).hex())
    return EXIT_OK


# ---- selftest --------------------------------------------------------------

class SelfTest:
    def __init__(self):
        self.failures = []
        self.counts = {}

    def check(self, group, ok, message):
        self.counts[group] = self.counts.get(group, 0) + 1
        if not ok:
            self.failures.append("%s: %s" % (group, message))


def selftest_merkle(t, vec):
    data = [bytes.fromhex(x) for x in vec["leaves"]]
    hashes = [leaf_hash(d) for d in data]
    roots = {int(n): bytes.fromhex(h) for n, h in vec["roots"].items()}
    roots[0] = bytes.fromhex(vec.get("empty_root", EMPTY_ROOT.hex()))

    for n in sorted(roots):
        t.check("roots", mth(hashes[:n]) == roots[n], "MTH of %d leaves" % n)
        t.check("roots", root_of(hashes[:n]) == roots[n], "one-pass root of %d leaves" % n)

    for v in vec["inclusion"]:
        i, n = v["leaf_index"], v["tree_size"]
        path = [bytes.fromhex(h) for h in v["path"]]
        where = "leaf %d of %d" % (i, n)
        t.check("inclusion", inclusion_path(hashes[:n], i) == path, "PATH for " + where)
        t.check("inclusion", verify_inclusion(i, n, hashes[i], path, roots[n]),
                "verify " + where)
        # Tampering must be caught.
        wrong = [
            (i, n, leaf_hash(b"not a leaf"), path, roots[n]),
            (i, n, hashes[i], path, sha256(b"not a root")),
            (i, n, hashes[i], path + [EMPTY_ROOT], roots[n]),
        ]
        if n > 1:
            wrong.append(((i + 1) % n, n, hashes[i], path, roots[n]))
        if path:
            wrong.append((i, n, hashes[i], path[:-1], roots[n]))
            wrong.append((i, n, hashes[i], [EMPTY_ROOT] + path[1:], roots[n]))
        for w in wrong:
            t.check("inclusion", not verify_inclusion(*w), "tampered proof accepted for " + where)

    for v in vec["consistency"]:
        m, n = v["old_size"], v["new_size"]
        proof = [bytes.fromhex(h) for h in v["proof"]]
        where = "%d -> %d" % (m, n)
        t.check("consistency", consistency_proof(hashes[:n], m) == proof, "PROOF for " + where)
        t.check("consistency", verify_consistency(m, n, roots[m], roots[n], proof),
                "verify " + where)
        wrong = [
            (m, n, sha256(b"x"), roots[n], proof),
            (m, n, roots[m], sha256(b"x"), proof),
            (m, n, roots[m], roots[n], proof + [EMPTY_ROOT]),
        ]
        if proof:
            wrong.append((m, n, roots[m], roots[n], proof[:-1]))
            wrong.append((m, n, roots[m], roots[n], [EMPTY_ROOT] + proof[1:]))
        if m > 1:
            wrong.append((m - 1, n, roots[m], roots[n], proof))
        for w in wrong:
            t.check("consistency", not verify_consistency(*w),
                    "tampered proof accepted for " + where)

    # Beyond the published vectors: every proof our generator makes for trees
    # of up to 64 leaves must verify, and must stop verifying when moved.
    big = [leaf_hash(bytes([i])) for i in range(64)]
    tree_roots = [root_of(big[:n]) for n in range(len(big) + 1)]
    for n in range(1, len(big) + 1):
        t.check("generated", mth(big[:n]) == tree_roots[n], "roots differ at %d" % n)
        for i in range(n):
            path = inclusion_path(big[:n], i)
            ok = verify_inclusion(i, n, big[i], path, tree_roots[n])
            moved = n > 1 and verify_inclusion((i + 1) % n, n, big[i], path, tree_roots[n])
            t.check("generated", ok and not moved, "inclusion %d of %d" % (i, n))
        for m in range(1, n + 1):
            proof = consistency_proof(big[:n], m)
            ok = verify_consistency(m, n, tree_roots[m], tree_roots[n], proof)
            bad = m < n and verify_consistency(m, n, tree_roots[m - 1] if m > 1 else EMPTY_ROOT,
                                               tree_roots[n], proof)
            t.check("generated", ok and not bad, "consistency %d -> %d" % (m, n))
    t.check("generated", verify_consistency(0, 5, EMPTY_ROOT, tree_roots[5], []), "0 -> 5")
    t.check("generated", not verify_consistency(5, 4, tree_roots[5], tree_roots[4], []), "5 -> 4")
    t.check("generated", not verify_inclusion(0, 0, big[0], [], EMPTY_ROOT), "leaf of empty tree")


def selftest_jcs(t, vec):
    import struct
    jv = vec.get("jcs")
    if not jv:
        t.failures.append("jcs: no JCS vectors in the vectors file")
        return
    for case in jv["cases"]:
        try:
            got = jcs_bytes(parse_json_strict(case["input"]))
        except ValueError as e:
            got = ("error: %s" % e).encode()
        t.check("jcs", got.hex() == case["expected_utf8_hex"],
                "%s: got %r" % (case["name"], got.decode("utf-8", "replace")))
    for bits, expected in jv["numbers"]:
        x = struct.unpack(">d", bytes.fromhex(bits.rjust(16, "0")))[0]
        got = es_number(x)
        t.check("numbers", got == expected, "%s: got %s, expected %s" % (bits, got, expected))
        t.check("numbers", float(expected) == x, "%s does not round-trip" % expected)
    for bits in jv.get("numbers_invalid", []):
        x = struct.unpack(">d", bytes.fromhex(bits))[0]
        try:
            es_number(x)
            t.check("numbers", False, "%s accepted" % bits)
        except JcsError:
            t.check("numbers", True, "")
    # Cases the brief spells out, checked against hand-derived expectations.
    own = [
        ({"b": "\u00e9", "a": [1, "2.50"]}, '{"a":[1,"2.50"],"b":"\u00e9"}'),
        ("\x00\x1f\x7f\u2028/", '"\\u0000\\u001f\x7f\u2028/"'),
        ([1.0, -0.0, 1e21, 1.5e-7, 123456789012345680000.0, 0.1], "[1,0,1e+21,1.5e-7,123456789012345680000,0.1]"),
        # U+1F600 is the UTF-16 pair D83D DE00, so it sorts before U+FB33.
        ({"\ufb33": 2, "\U0001f600": 1}, '{"\U0001f600":1,"\ufb33":2}'),
        ([2 ** 53, 2 ** 53 + 1, 10 ** 20, -(2 ** 63), 2 ** 64],
         "[9007199254740992,9007199254740992,100000000000000000000,"
         "-9223372036854776000,18446744073709552000]"),
    ]
    for value, expected in own:
        got = jcs(value)
        t.check("jcs", got == expected, "%r: got %r, expected %r" % (value, got, expected))
    for bad in ["\ud800", float("nan"), float("inf"), {1: 2}, 10 ** 400]:
        try:
            jcs(bad)
            t.check("jcs", False, "%r accepted" % (bad,))
        except JcsError:
            t.check("jcs", True, "")


def selftest_notes(t, vec):
    """Signed-note checks; returns a word for the summary."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return "signatures skipped (no 'cryptography' package)"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    sn = vec.get("signed_note")
    if sn:
        try:
            verify_signed_note(sn["note"].encode("utf-8"), sn["vkey"])
            t.check("notes", True, "")
        except (Invalid, CannotRun) as e:
            t.check("notes", False, "published example: %s" % e)
        tampered = sn["note"].replace("example", "exampla", 1).encode("utf-8")
        try:
            verify_signed_note(tampered, sn["vkey"])
            t.check("notes", False, "tampered published example accepted")
        except Invalid:
            t.check("notes", True, "")

    # Round trip through our own checkpoint format with a fresh key.
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    name = "etal.test/log"
    kid = key_id(name, ED25519_TYPE, pub)
    vkey = "%s+%s+%s" % (name, kid.hex(), b64(bytes([ED25519_TYPE]) + pub))
    root = sha256(b"root")
    text = ("%s\n%d\n%s\n" % (name, 42, b64(root))).encode("utf-8")

    def signed(text, signer=key, kid=kid, who=name):
        line = "%s %s %s\n" % (EM_DASH, who, b64(kid + signer.sign(text)))
        return text + b"\n" + line.encode("utf-8")

    note = signed(text)
    try:
        t.check("notes", verify_checkpoint(note, vkey) == (name, 42, root), "checkpoint fields")
    except (Invalid, CannotRun) as e:
        t.check("notes", False, "own checkpoint: %s" % e)
    other = Ed25519PrivateKey.generate()
    cosigned = note + ("%s witness.test %s\n" % (EM_DASH, b64(b"\0\0\0\0" + other.sign(text)))).encode()
    try:
        verify_checkpoint(cosigned, vkey)
        t.check("notes", True, "")
    except (Invalid, CannotRun) as e:
        t.check("notes", False, "unknown extra signature not ignored: %s" % e)
    bad_notes = {
        "changed size": note.replace(b"\n42\n", b"\n43\n", 1),
        "wrong signer": signed(text, signer=other),
        "wrong key id": signed(text, kid=b"\0\0\0\0"),
        "wrong name": signed(text, who="etal.test/other"),
        "no signature": text + b"\n",
        "bad size": signed(("%s\n042\n%s\n" % (name, b64(root))).encode()),
        "short root": signed(("%s\n42\n%s\n" % (name, b64(root[:31]))).encode()),
    }
    for what, raw in bad_notes.items():
        try:
            verify_checkpoint(raw, vkey)
            t.check("notes", False, "%s accepted" % what)
        except Invalid:
            t.check("notes", True, "")
    return "%d signed-note checks" % t.counts.get("notes", 0)


def cmd_selftest(args):
    vec = load_json_input(args.vectors)
    t = SelfTest()
    selftest_merkle(t, vec)
    selftest_jcs(t, vec)
    sig_summary = selftest_notes(t, vec)
    for failure in t.failures:
        print("FAIL " + failure, file=sys.stderr)
    c = t.counts
    summary = ("%d root, %d inclusion, %d consistency, %d generated-proof, %d JCS, %d number checks; %s"
               % (c.get("roots", 0), c.get("inclusion", 0), c.get("consistency", 0),
                  c.get("generated", 0), c.get("jcs", 0), c.get("numbers", 0), sig_summary))
    if t.failures:
        print("selftest FAILED (%d failures): %s" % (len(t.failures), summary))
        return EXIT_SELFTEST_FAILED
    print("selftest ok: " + summary)
    return EXIT_OK


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Independent verifier for etal's sealed event history.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("selftest", help="check this script against published test vectors")
    p.add_argument("--vectors", default=str(DEFAULT_VECTORS),
                   help="vectors file (default: %(default)s)")
    p.set_defaults(func=cmd_selftest)

    p = sub.add_parser("log", help="recompute the Merkle tree over the events table")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dsn", help="PostgreSQL connection URL, passed to psql")
    src.add_argument("--rows", metavar="FILE",
                     help="read event rows from a JSON-lines file instead ('-' = stdin)")
    p.add_argument("--tree-size", type=int, metavar="N",
                   help="number of leaves (default: the checkpoint's, else every event)")
    p.add_argument("--checkpoint", metavar="FILE", help="C2SP signed checkpoint ('-' = stdin)")
    p.add_argument("--vkey", metavar="VKEY", help="verifier key text, or a file holding it")
    p.add_argument("--origin", help="also require this checkpoint origin")
    p.add_argument("--root", help="expected root hash (base64 or hex)")
    p.add_argument("--leaves", metavar="FILE",
                   help="expected leaf hashes, one hex per line, to locate a mismatch")
    p.add_argument("--stable-only", action="store_true",
                   help="only rows below the snapshot xmin watermark (ADR 0001)")
    p.add_argument("--psql", default="psql", help="psql binary (default: %(default)s)")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("inclusion", help="verify an inclusion proof (JSON file, '-' = stdin)")
    p.add_argument("file")
    p.set_defaults(func=cmd_inclusion)

    p = sub.add_parser("consistency", help="verify a consistency proof (JSON file, '-' = stdin)")
    p.add_argument("file")
    p.set_defaults(func=cmd_consistency)

    p = sub.add_parser("leaf", help="print the leaf hash of one event row")
    p.add_argument("--row", required=True, metavar="JSON", help="the row as JSON ('-' = stdin)")
    p.add_argument("--data", action="store_true", help="print the leaf data line first")
    p.set_defaults(func=cmd_leaf)

    args = parser.parse_args(argv)
    if getattr(args, "tree_size", None) is not None and args.tree_size < 0:
        parser.error("--tree-size must not be negative")
    try:
        return args.func(args)
    except Invalid as e:
        print(e)
        return EXIT_MISMATCH
    except CannotRun as e:
        print("error: %s" % e, file=sys.stderr)
        return EXIT_CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main())
