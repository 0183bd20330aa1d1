"""Accuracy on photo-like pictures: ``python -m loadtest.photos``.

Builds photo-like sets from real Fashion-MNIST test images (``loadtest.photosets``), sends every
picture through the gateway's ``/v1/classify`` and through the SavedModel's ``serving_bytes``
signature (TF Serving REST ``{"b64": ...}`` on the model server), and reports accuracy per set beside
the dataset-style accuracy of the same images, the old whole-frame resize for comparison, and whether
the two paths gave the same answer for every picture. Goals (issue 18): every photo-like set within
3 points of dataset-style accuracy; serving_bytes equal to the gateway on every picture.

Starts its own model server and gateway on loopback from ``--repo`` unless ``--gateway`` and
``--model-server`` name running ones (the model server may be real TF Serving's REST port).
Writes ``report.json`` and ``report.md`` under ``--out/<UTC time>/``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from loadtest import machine, photosets, procs
from loadtest.targets import API_KEY, start_gateway, start_modelserver, work_repo
from training.data import load_dataset, subset

GOAL_POINTS = 3.0


def _b64(picture: bytes) -> str:
    return base64.b64encode(picture).decode()


def _naive(picture: bytes) -> list[Any]:
    """The old preparation (grayscale, the whole frame resized to 28x28) for comparison."""
    image = Image.open(io.BytesIO(picture)).convert("L").resize((28, 28), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32).reshape(28, 28, 1).tolist()


class Paths:
    """The three ways a picture reaches the model; each returns class ids (-1: refused with a 4xx)."""

    def __init__(self, gateway: str, model_server: str, model: str, api_key: str, batch: int) -> None:
        self.client = httpx.Client(timeout=120)
        self.gateway, self.model_server, self.model, self.batch = gateway, model_server, model, batch
        self.headers = {"x-api-key": api_key} if api_key else {}

    def _batched(self, pictures: list[bytes], send: Any) -> tuple[list[int], list[list[float]]]:
        classes: list[int] = []
        probabilities: list[list[float]] = []
        for start in range(0, len(pictures), self.batch):
            chunk = pictures[start : start + self.batch]
            answer = send(chunk)
            if answer is None:  # one bad picture fails its whole request: send them one by one
                answers = [send([picture]) for picture in chunk]
                for single in answers:
                    classes.extend(single[0] if single else [-1])
                    probabilities.extend(single[1] if single else [[]])
                continue
            classes.extend(answer[0])
            probabilities.extend(answer[1])
        return classes, probabilities

    def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any] | None:
        response = self.client.post(url, json=body, headers=headers)
        if 400 <= response.status_code < 500:
            return None
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def classify(self, pictures: list[bytes]) -> tuple[list[int], list[list[float]]]:
        def send(chunk: list[bytes]) -> tuple[list[int], list[list[float]]] | None:
            body = {"images": [_b64(picture) for picture in chunk]}
            answer = self._post(f"{self.gateway}/v1/classify/{self.model}", body, self.headers)
            if answer is None:
                return None
            predictions = answer["predictions"]
            return [p["class_id"] for p in predictions], [list(p["probabilities"].values()) for p in predictions]

        return self._batched(pictures, send)

    def _predict(self, body: dict[str, Any]) -> tuple[list[int], list[list[float]]] | None:
        answer = self._post(f"{self.model_server}/v1/models/{self.model}:predict", body, {})
        if answer is None:
            return None
        predictions = answer["predictions"]
        return [int(p["class_id"]) for p in predictions], [p["probabilities"] for p in predictions]

    def serving_bytes(self, pictures: list[bytes]) -> tuple[list[int], list[list[float]]]:
        def send(chunk: list[bytes]) -> tuple[list[int], list[list[float]]] | None:
            instances = [{"b64": _b64(picture)} for picture in chunk]
            return self._predict({"signature_name": "serving_bytes", "instances": instances})

        return self._batched(pictures, send)

    def naive(self, pictures: list[bytes]) -> list[int]:
        def send(chunk: list[bytes]) -> tuple[list[int], list[list[float]]] | None:
            return self._predict({"instances": [_naive(picture) for picture in chunk]})

        return self._batched(pictures, send)[0]


def _accuracy(classes: list[int], labels: np.ndarray) -> float:
    return float((np.asarray(classes) == labels).mean())


def measure(paths: Paths, images: np.ndarray, labels: np.ndarray, names: list[str], seed: int) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        started = time.monotonic()
        pictures = photosets.build(name, images, seed)
        gateway, gateway_p = paths.classify(pictures)
        graph, graph_p = paths.serving_bytes(pictures)
        naive = paths.naive(pictures)
        same = sum(a == b for a, b in zip(gateway, graph, strict=True))
        gaps = [
            float(np.abs(np.asarray(a) - np.asarray(b)).max())
            for a, b in zip(gateway_p, graph_p, strict=True)
            if a and b
        ]
        row = {
            "set": name,
            "description": photosets.SETS[name][0] if name in photosets.SETS else "the 28x28 test image as a PNG",
            "pictures": len(pictures),
            "bytes_mean": round(sum(map(len, pictures)) / len(pictures)),
            "accuracy_naive": _accuracy(naive, labels),
            "accuracy_classify": _accuracy(gateway, labels),
            "accuracy_serving_bytes": _accuracy(graph, labels),
            "refused_classify": gateway.count(-1),
            "refused_serving_bytes": graph.count(-1),
            "same_answer": same,
            "max_probability_gap": max(gaps, default=0.0),
            "seconds": round(time.monotonic() - started, 1),
        }
        rows.append(row)
        print(
            f"{name:12s} naive {row['accuracy_naive']:.4f}  classify {row['accuracy_classify']:.4f}  "
            f"serving_bytes {row['accuracy_serving_bytes']:.4f}  same {same}/{len(pictures)}  ({row['seconds']} s)",
            flush=True,
        )
    return rows


def judge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    reference = next(row for row in rows if row["set"] == "dataset")
    for row in rows:
        row["points_behind_classify"] = round(100 * (reference["accuracy_classify"] - row["accuracy_classify"]), 2)
        row["points_behind_serving_bytes"] = round(
            100 * (reference["accuracy_serving_bytes"] - row["accuracy_serving_bytes"]), 2
        )
    photos = [row for row in rows if row["set"] != "dataset"]
    worst = max((max(row["points_behind_classify"], row["points_behind_serving_bytes"]) for row in photos), default=0)
    return {
        "within_3_points": worst <= GOAL_POINTS,
        "worst_points_behind": worst,
        "serving_bytes_equals_gateway": all(row["same_answer"] == row["pictures"] for row in rows),
        "max_probability_gap": max(row["max_probability_gap"] for row in rows),
    }


def markdown(report: dict[str, Any]) -> str:
    run, goals = report["run"], report["goals"]
    lines = [
        f"# Photo-like pictures: {run['model']} ({run['model_version']})",
        "",
        f"{run['pictures_per_set']} Fashion-MNIST test images per set (class-balanced, seed {run['seed']}), "
        f"{run['started']}, {report['machine']['cpu_model']} ({report['machine']['cores_logical']} logical cores). "
        f"Model card: {run['model_card']}.",
        "",
        "| set | old resize | /v1/classify | serving_bytes | points behind dataset | same answer | pictures |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["sets"]:
        behind = max(row["points_behind_classify"], row["points_behind_serving_bytes"])
        refused = row["refused_classify"] + row["refused_serving_bytes"]
        note = f" ({refused} refused)" if refused else ""
        lines.append(
            f"| {row['set']} | {100 * row['accuracy_naive']:.1f}% | {100 * row['accuracy_classify']:.1f}% | "
            f"{100 * row['accuracy_serving_bytes']:.1f}%{note} | {behind:+.1f} | "
            f"{row['same_answer']}/{row['pictures']} | {row['description']} |"
        )
    lines += [
        "",
        f"- every photo-like set within {GOAL_POINTS:.0f} points of dataset-style accuracy: "
        f"**{'met' if goals['within_3_points'] else 'NOT met'}** (worst {goals['worst_points_behind']:+.2f} points)",
        f"- serving_bytes gives the gateway's answer on every picture: "
        f"**{'met' if goals['serving_bytes_equals_gateway'] else 'NOT met'}** (largest difference of a "
        f"probability between the two: {goals['max_probability_gap']:.2g})",
        "",
        '"old resize" is the preparation before issue 18 (grayscale, whole frame resized to 28x28), sent as '
        'pixels to `serving_default`; "points behind dataset" is the larger of the two paths\' (negative: '
        "ahead). Command: `" + run["command"] + "`.",
    ]
    return "\n".join(lines) + "\n"


def _model_card(repo: Path | None, model: str) -> tuple[str, str]:
    if repo is None:
        return "unknown", "unknown"
    versions = sorted((int(p.name) for p in (repo / model).iterdir() if p.name.isdigit()), reverse=True)
    if not versions:
        return "none", "none"
    card_path = repo / model / str(versions[0]) / "assets.extra" / "model_card.json"
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError):
        return f"version {versions[0]}", "no model card"
    profile = card.get("training", {}).get("profile", {})
    name = profile.get("name", "?") if isinstance(profile, dict) else profile
    epochs = profile.get("epochs", {}).get(model) if isinstance(profile, dict) else None
    recipe = card.get("training", {}).get("recipe")
    if epochs is None and isinstance(recipe, dict):  # cards since the per-model recipes
        epochs = recipe.get("epochs")
    accuracy = card.get("metrics", {}).get("test_accuracy")
    return (
        f"version {versions[0]}",
        f"profile {name} ({epochs} epochs), test accuracy {accuracy}, commit {card.get('git_commit', '?')}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.photos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path("models"), help="model repository (default ./models)")
    parser.add_argument("--model", default="cnn", help="servable to measure (default cnn)")
    parser.add_argument("--size", type=int, default=2000, help="test images per set, class-balanced (default 2000)")
    parser.add_argument("--sets", default="all", help=f"comma list of: {', '.join(photosets.SETS)} (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32, help="pictures per request (default 32)")
    parser.add_argument("--gateway", default=None, help="a running gateway's URL (else one is started)")
    parser.add_argument("--model-server", default=None, help="a running model server's (or TF Serving's) REST URL")
    parser.add_argument("--api-key", default=None, help="the running gateway's API key")
    parser.add_argument("--out", type=Path, default=Path("bench/photos"), help="reports go to OUT/<UTC time>/")
    args = parser.parse_args(argv)
    names = list(photosets.SETS) if args.sets == "all" else [name for name in args.sets.split(",") if name]
    unknown = [name for name in names if name not in photosets.SETS]
    if unknown:
        parser.error(f"unknown set(s) {unknown}; choose from {', '.join(photosets.SETS)}")
    if (args.gateway is None) != (args.model_server is None):
        parser.error("--gateway and --model-server go together (or neither: both are started)")
    started = dt.datetime.now(dt.UTC)
    out = args.out / started.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset()
    images, labels = subset(data.x_test, data.y_test, args.size, args.seed)
    servers: list[procs.Managed] = []
    try:
        if args.gateway is None:
            if not (args.repo / args.model).is_dir():
                parser.error(f"{args.repo / args.model}: no such model; train it (python -m training) or pass --repo")
            repo, _ = work_repo(args.repo, Path("/nonexistent"), out / "repo", {args.model})
            model_server = start_modelserver(repo / "models.config", [args.model], out, batching=False, timeout=300)
            gateway = start_gateway(repo, model_server.grpc, [args.model], out, timeout=120)
            servers += [model_server.managed, gateway.managed]
            gateway_url, model_server_url, api_key = gateway.rest, model_server.rest, API_KEY
        else:
            gateway_url, model_server_url, api_key = args.gateway, args.model_server, args.api_key or ""
        paths = Paths(gateway_url, model_server_url, args.model, api_key, args.batch)
        rows = measure(paths, images, labels, ["dataset", *names], args.seed)
    finally:
        for server in servers:
            server.stop()
    version, card = _model_card(args.repo if args.gateway is None else None, args.model)
    report = {
        "run": {
            "model": args.model,
            "model_version": version,
            "model_card": card,
            "pictures_per_set": len(images),
            "seed": args.seed,
            "started": started.isoformat(timespec="seconds"),
            "command": "python -m loadtest.photos " + " ".join(argv if argv is not None else sys.argv[1:]),
        },
        "machine": machine.describe(),
        "sets": rows,
    }
    goals = judge(rows)
    report["goals"] = goals
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'report.md'}")
    return 0 if goals["within_3_points"] is True and goals["serving_bytes_equals_gateway"] is True else 1


if __name__ == "__main__":
    raise SystemExit(main())
