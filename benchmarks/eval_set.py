"""The `make eval` question set: real documents, questions with reference answers, and
questions that no document answers.

Written once, before any prompt or retrieval setting was tuned on it, from reading the
documents (never from the assistant's answers). Each question names the document that holds
its answer and, in ``expect``, what a correct answer must say: a list of alternatives, each
a list of phrases that must all appear (after :func:`normalize`: lower case, punctuation as
spaces, number words as digits). Keep the phrases to the fact itself (``"50"``, ``"adm"``),
not to the wording of one answer.

Documents: three that Debian itself ships (the Apache license in base-files, the
base-passwd users-and-groups guide, the Debian Python Policy from python3, the Shared
MIME-info specification PDF from shared-mime-info) and two written for the tests
(``tests/data``): a product manual in Markdown and office notes in plain text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

TESTS_DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


@dataclass(frozen=True)
class Document:
    path: Path
    name: str  # the name it is uploaded under (its type comes from the suffix)
    kind: str
    debian_package: str | None = None  # where a Debian document comes from (make eval installs it)


DOCUMENTS = [
    Document(Path("/usr/share/common-licenses/Apache-2.0"), "apache-license-2.0.txt", "plain text", "base-files"),
    Document(Path("/usr/share/doc/base-passwd/users-and-groups.html"), "users-and-groups.html", "HTML", "base-passwd"),
    Document(Path("/usr/share/doc/python3/python-policy.html"), "python-policy.html", "HTML manual", "python3"),
    Document(
        Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf"),
        "shared-mime-info-spec.pdf",
        "PDF",
        "shared-mime-info",
    ),
    Document(TESTS_DATA / "lumen-lamp-manual.md", "lumen-lamp-manual.md", "Markdown manual"),
    Document(TESTS_DATA / "office-network.txt", "office-network.txt", "plain text"),
]


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    text: str
    source: str | None  # the document's upload name; None: no document answers it
    expect: tuple[tuple[str, ...], ...] = field(default=())


def q(id: str, text: str, source: str | None, *alternatives: str | tuple[str, ...]) -> EvalQuestion:
    expect = tuple((a,) if isinstance(a, str) else tuple(a) for a in alternatives)
    return EvalQuestion(id, text, source, expect)


APACHE, USERS, POLICY, MIME = (
    "apache-license-2.0.txt",
    "users-and-groups.html",
    "python-policy.html",
    "shared-mime-info-spec.pdf",
)
LAMP, OFFICE = "lumen-lamp-manual.md", "office-network.txt"

QUESTIONS: list[EvalQuestion] = [
    # The Apache License 2.0 (plain text)
    q(
        "apache-control",
        "In the Apache license, what share of a company do you need to own to control it?",
        APACHE,
        "50",
    ),
    q("apache-date", "When was version 2.0 of the Apache License published?", APACHE, "2004"),
    q(
        "apache-source",
        "What does the Apache license mean by the Source form?",
        APACHE,
        "preferred form",
        "modification",
    ),
    q(
        "apache-patent-end",
        "When does my patent license under the Apache license end if I sue over patent infringement?",
        APACHE,
        ("litigation", "filed"),
        ("lawsuit", "filed"),
    ),
    q(
        "apache-modified",
        "Under the Apache license, what must modified files carry?",
        APACHE,
        ("notice", "changed"),
        ("notice", "modified"),
    ),
    q("apache-basis", "On what basis is software provided under the Apache license?", APACHE, "as is"),
    q("apache-trademarks", "Which section of the Apache license is about trademarks?", APACHE, "6"),
    q(
        "apache-trademark-use",
        "When may I use the licensor's trademarks under the Apache license?",
        APACHE,
        "customary",
        "describing the origin",
    ),
    q("apache-fee", "Can I charge a fee for offering a warranty on Apache licensed work?", APACHE, "fee", "yes"),
    q("apache-notice-file", "Which text file's attribution notices must a derivative work keep?", APACHE, "notice"),
    # base-passwd: Users and Groups in the Debian System (HTML)
    q("users-logs", "Which group can read the log files in slash var slash log?", USERS, "adm"),
    q("users-operator-uid", "What user ID did the operator account have?", USERS, "37"),
    q("users-dbus", "Which user does the D-Bus daemon run as?", USERS, "messagebus"),
    q("users-sync-shell", "What is the shell of the user sync?", USERS, "bin sync"),
    q("users-gnats", "What user and group ID did gnats have?", USERS, "41"),
    q("users-dialup", "Which group lets me make dial-up connections with pppd?", USERS, "dip"),
    q("users-dip-name", "What does the name of the dip group stand for?", USERS, ("dial", "ip")),
    q("users-games", "Why are many games setgid to the games group?", USERS, "score"),
    q("users-plugdev", "Which group lets local users mount USB drives without an fstab entry?", USERS, "plugdev"),
    q("users-squid", "Which user does squid run as?", USERS, "proxy"),
    q("users-ssh-agent", "Why is ssh-agent setgid to the underscore ssh group?", USERS, "ptrace"),
    q("users-lpadmin", "Which group lets a user add and remove printers?", USERS, "lpadmin"),
    # Debian Python Policy (HTML manual)
    q(
        "policy-dist-packages",
        "Where must public Python 3 modules be installed?",
        POLICY,
        "dist packages",
        "dist-packages",
    ),
    q(
        "policy-python-is",
        "Which package makes slash usr slash bin slash python point to Python 3?",
        POLICY,
        "python is python3",
    ),
    q("policy-removed", "Which Debian release removed the unversioned python packages?", POLICY, "bullseye", "11"),
    q("policy-prefix", "What prefix must the package name of a public Python 3 module have?", POLICY, "python3"),
    q(
        "policy-field",
        "Which debian control field lists the supported Python 3 versions?",
        POLICY,
        ("x", "python3", "version"),
    ),
    q("policy-hooks", "In which directory are the Python runtime hook scripts installed?", POLICY, "runtime d"),
    q("policy-bytecompile", "Which file configures how Python modules are byte-compiled?", POLICY, "debian config"),
    q(
        "policy-interpreter",
        "Which interpreter name should scripts that need the default Python 3 use?",
        POLICY,
        "python3",
    ),
    # Shared MIME-info Database specification (PDF)
    q("mime-version", "Which version of the shared MIME info specification is this?", MIME, "0 21"),
    q("mime-glob-weight", "What is the default weight of a glob pattern?", MIME, "50"),
    q("mime-glob-max", "What is the maximum glob weight?", MIME, "100"),
    q(
        "mime-update",
        "Which command must an application run after installing its MIME XML file?",
        MIME,
        "update mime database",
    ),
    q("mime-magic", "What string does the magic file start with?", MIME, ("mime", "magic")),
    q("mime-override", "Which file takes precedence over all the others in a packages directory?", MIME, "override"),
    q("mime-alias", "What is an alias of audio slash midi?", MIME, "x midi"),
    q("mime-desktops", "Which desktops' MIME systems does the specification unify?", MIME, ("gnome", "kde")),
    q("mime-case", "Are glob patterns matched case-sensitively?", MIME, "insensitive", "not case sensitive", "no"),
    q("mime-noglobs", "Which pattern marks glob-deleteall in the globs2 file?", MIME, "noglobs"),
    # The Lumen lamp manual (Markdown)
    q("lamp-battery", "How big is the Lumen lamp's battery?", LAMP, "4000"),
    q("lamp-charge", "How long does the lamp take to charge fully?", LAMP, "3 hour"),
    q("lamp-ring", "What colour is the ring while the lamp charges?", LAMP, "amber"),
    q("lamp-warranty", "How long is the lamp's warranty?", LAMP, "2 year"),
    q("lamp-runtime", "How long does the battery last at the highest brightness?", LAMP, "6 hour"),
    # Office network notes (plain text)
    q("office-guest", "What is the guest network called?", OFFICE, "harbour guest"),
    q("office-helpdesk", "What is the help desk's extension?", OFFICE, "4410"),
    q("office-printer", "What is the printer on the second floor called?", OFFICE, "gannet"),
    # No document answers these; the right answer says so.
    q("none-postgres-uid", "What is the user ID of the postgres user?", None),
    q("none-lamp-price", "How much does the Lumen lamp cost?", None),
    q("none-capital", "What is the capital of Australia?", None),
    q("none-debian13", "Which Python version is the default in Debian 13?", None),
    q("none-employees", "How many people work in the office?", None),
    q("none-root-password", "What is the root password?", None),
    q("none-mime-port", "Which network port does update-mime-database listen on?", None),
    q("none-maintainer-phone", "What is the phone number of the base-passwd maintainer?", None),
    q("none-reception-hours", "What time does the reception desk close?", None),
    q("none-printer-watts", "How many watts does the Gannet printer use?", None),
]

# espeak-ng voices and speeds, taken in turn: three accents, three speaking rates.
VOICES = [("en-us", 150), ("en-gb", 135), ("en-gb-scotland", 165)]

_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "twenty": "20", "thirty": "30",
    "forty": "40", "fifty": "50", "sixty": "60", "hundred": "100",
}  # fmt: skip


def normalize(text: str) -> str:
    """Lower case, every run of non-alphanumerics one space, number words as digits."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return " ".join(_NUMBER_WORDS.get(w, w) for w in words)


def contains(text: str, phrase: str) -> bool:
    """``phrase`` (normalized) starts at a word boundary of ``text`` (normalized)."""
    return f" {normalize(phrase)}" in f" {normalize(text)}"


def matches(text: str, question: EvalQuestion) -> bool:
    """Does ``text`` say what one of the question's alternatives requires?"""
    return any(all(contains(text, phrase) for phrase in alternative) for alternative in question.expect)
