"""Config files fail as tensorflow_model_server's protobuf C++ parser fails on them.

TF Serving reads its config files with ``TextFormat::ParseFromString`` (``util/proto_util.h``), whose
parser logs ``Error parsing text-format <type>: <line>:<column>: <message>`` per error
(``text_format.cc`` ParserImpl::ReportError); its own integration test greps for that text
(``tensorflow_model_server_test.py`` testBadModelConfig). The expectations below come from the C++
sources (``text_format.cc``, ``io/tokenizer.cc`` of protobuf 6.31, the version TF 2.21 links) and,
where Debian's ``protoc`` (the same C++ parser, protobuf 3.21) is installed, from running it.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from serving import protos
from serving.modelserver import config, textformat

MODEL_SERVER_CONFIG = protos.ModelServerConfig.DESCRIPTOR
TESTDATA = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "tf_serving_testdata"


def errors(text: str | bytes, descriptor=MODEL_SERVER_CONFIG) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [f"{p.line + 1}:{p.column + 1}: {p.message}" for p in textformat.check(data, descriptor)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # TF Serving's bad_model_config.txt: the error is at the token after the unknown field name
        (
            "improperly formatted file",
            ['1:12: Message type "tensorflow.serving.ModelServerConfig" has no field named "improperly".'],
        ),
        (
            'model_config_list { config { name: "a" base_path: "/x" model_platform: tensorflow } }',
            ["1:72: Expected string, got: tensorflow"],
        ),
        ('model_config_list { config { name: "a"', ["1:39: Expected identifier, got: "]),
        (
            'model_config_list { config { name: "a" name: "b" } }',
            ['1:44: Non-repeated field "name" is specified multiple times.'],
        ),
        # proto3 presence: a default value does not count as set (Reflection::HasField)
        ('model_config_list { config { name: "" name: "b" } }', []),
        (
            "model_config_list { config { model_version_policy { specific { versions: 99999999999999999999 } } } }",
            ["1:74: Integer out of range (99999999999999999999)"],
        ),
        (
            'model_config_list { config { name: "a\nb" } }',
            [
                '1:38: Multiline strings are not allowed. Did you miss a "?.',
                "2:7: Unexpected end of string.",
                '2:2: Message type "tensorflow.serving.ModelConfig" has no field named "b".',
            ],
        ),
        (
            "model_config_list { config { model_version_policy { all {} specific { versions: 1 } } } }",
            ['1:69: Field "specific" is specified along with field "all", another member of oneof "policy_choice".'],
        ),
        (
            "model_config_list { config { model_type: NOPE } }",
            ['1:47: Unknown enumeration value of "NOPE" for field "model_type".'],
        ),
        (
            "model_config_list { config { model_version_policy { specific { versions: 12abc } } } }",
            [
                "1:76: Need space between number and identifier.",
                '1:80: Message type "tensorflow.serving.FileSystemStoragePathSourceConfig.ServableVersionPolicy'
                '.Specific" has no field named "abc".',
            ],
        ),
        ('model_config_list { config { name: "x" } } }', ["1:44: Expected identifier, got: }"]),
        (
            "# only a comment\n\tmodel_config_list { config\t{ bad: 1 } }",
            ['2:46: Message type "tensorflow.serving.ModelConfig" has no field named "bad".'],  # a tab is 8 columns
        ),
        ('model_config_list: { config: [ { name: "x" }, { name: "y" } ] }', []),
        (
            'custom_model_config { [type.googleapis.com/nope.Nope] { name: "x" } }',
            ['1:55: Could not find type "type.googleapis.com/nope.Nope" stored in google.protobuf.Any.'],
        ),
    ],
)
def test_errors_in_the_cpp_parsers_words_and_places(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


def test_bad_model_config_fixture() -> None:
    bad = TESTDATA / "bad_model_config.txt"
    if not bad.is_file():
        pytest.skip(f"TF Serving's test data is not at {TESTDATA}")
    with pytest.raises(config.ConfigError) as caught:
        config.read_model_server_config(bad)
    assert caught.value.logged == (
        "Error parsing text-format tensorflow.serving.ModelServerConfig: 1:12: "
        'Message type "tensorflow.serving.ModelServerConfig" has no field named "improperly".',
    )
    assert caught.value.message == f"Invalid protobuf file: '{bad}'"


def test_good_model_config_fixture_parses() -> None:
    good = TESTDATA / "good_model_config.txt"
    if not good.is_file():
        pytest.skip(f"TF Serving's test data is not at {TESTDATA}")
    assert errors(good.read_bytes()) == []


# ---- against the C++ parser itself ---------------------------------------------------------

SEEDS = [
    'model_config_list { config { name: "half_plus_two" base_path: "/m/h" model_platform: "tensorflow" '
    'model_version_policy { specific { versions: 1 versions: 0x2 } } version_labels { key: "stable" value: 1 } } }',
    "model_config_list: {\n  config: {\n    name: 'a',\n    base_path: \"/x\\t\\101\",\n"
    "    logging_config { sampling_config { sampling_rate: 0.5e-1f } }\n  },\n}\n",
    "model_config_list < config < model_type: TENSORFLOW model_version_policy < latest < num_versions: 2 > > > >",
    'custom_model_config { [type.googleapis.com/tensorflow.serving.ModelConfig] { name: "x" } }',
]
# protobuf 3.21 worded one tokenizer error differently from the protobuf that TF 2.21 links
OLD_WORDING = {"String literals cannot cross line boundaries.": 'Multiline strings are not allowed. Did you miss a "?.'}


def _protoc_errors(data: bytes, descriptor_set: Path) -> list[str]:
    result = subprocess.run(
        [
            "protoc",
            f"--descriptor_set_in={descriptor_set}",
            "--encode=tensorflow.serving.ModelServerConfig",
            "tensorflow_serving/config/model_server_config.proto",
        ],
        input=data,
        capture_output=True,
        timeout=30,
        check=False,
    )
    lines = [
        line[len("input:") :] for line in result.stderr.decode("latin-1").splitlines() if line.startswith("input:")
    ]
    lines = [line for line in lines if ": warning:" not in line]  # warnings are not errors (deprecated model_type)
    for old, new in OLD_WORDING.items():
        lines = [line.replace(old, new) for line in lines]
    return lines


def _mutants(count: int) -> list[bytes]:
    rng = random.Random(19)
    alphabet = b" \t\n{}<>[]:;,\"'\\#-+.0123456789xXeEfabnz_/\x00\x01\xc3\xa9"
    mutants = [seed.encode() for seed in SEEDS]
    while len(mutants) < count:
        text = bytearray(rng.choice(SEEDS).encode())
        for _ in range(rng.randint(1, 3)):
            position = rng.randint(0, len(text))
            choice = rng.random()
            if choice < 0.4 and text:
                del text[min(position, len(text) - 1)]
            elif choice < 0.8:
                text[position:position] = bytes([rng.choice(alphabet)])
            elif text:
                text[min(position, len(text) - 1)] = rng.choice(alphabet)
        mutants.append(bytes(text))
    return mutants


def test_same_errors_as_protoc_on_mutated_configs(tmp_path: Path) -> None:
    """Differential check: what Debian's protoc (C++ TextFormat) reports for 120 mutated configs."""
    if shutil.which("protoc") is None:
        pytest.skip("protoc is not installed (Debian package protobuf-compiler; .ci/run installs it)")
    descriptor_set = tmp_path / "descriptors.binpb"
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(protos.DESCRIPTOR_SET_PATH.read_bytes())
    descriptor_set.write_bytes(files.SerializeToString())
    differences = []
    for data in _mutants(120):
        ours, theirs = errors(data), _protoc_errors(data, descriptor_set)
        if ours != theirs:
            differences.append((data, ours, theirs))
    assert differences == []
