"""Gateway ensembles: one request fanned out to members in parallel, each with its own deadline.

``soft`` and ``hard`` ensembles combine the members with the temperatures and weights of the model card
named by ``calibration_from`` (default: the ``ensemble`` SavedModel's, see serving.gateway.calibration)
when that card has them for exactly these members, so they answer as the ensemble SavedModel does;
otherwise ``soft`` is the mean of the members' probabilities. ``weighted`` always uses its own weights.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving import tracing
from serving.errors import InvalidInput, ServingError, Unavailable
from serving.gateway.calibration import Calibration, latest_card, read_calibration
from serving.gateway.config import EnsembleConfig
from serving.gateway.context import CallContext
from serving.gateway.metrics import Metrics
from serving.gateway.routing import vote
from serving.predict import Predict, Prediction

Forward = Callable[[str, Predict, CallContext], Awaitable[Prediction]]
CARD_CHECK_S = 5.0  # how often the repository is checked for a newer model card


@dataclass(frozen=True)
class MemberAnswer:
    servable: str
    version: str = ""
    class_ids: list[int] | None = None
    error: str | None = None


class Ensemble:
    def __init__(self, name: str, config: EnsembleConfig, metrics: Metrics, repo: Path | None = None) -> None:
        self.name = name
        self.config = config
        self._metrics = metrics
        self._repo = repo if config.calibration_from and config.voting != "weighted" else None
        self._card: Path | None = None
        self._calibration: Calibration | None = None
        self._next_check = 0.0

    async def calibration(self) -> Calibration | None:
        """The model card's combination for these members (re-read when a newer card appears)."""
        if self._repo is None:
            return None
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + CARD_CHECK_S
            await asyncio.to_thread(self._reload)
        return self._calibration

    def _reload(self) -> None:
        if self._repo is None or self.config.calibration_from is None:
            return
        card = latest_card(self._repo, self.config.calibration_from)
        if card != self._card:
            self._card = card
            self._calibration = read_calibration(card, list(self.config.members)) if card else None

    async def predict(
        self, request: Predict, call: CallContext, forward: Forward
    ) -> tuple[Prediction, list[MemberAnswer]]:
        members = self.config.members
        results = await asyncio.gather(
            *(self._member(servable, request, call, forward) for servable in members), return_exceptions=True
        )
        replied: list[tuple[int, np.ndarray]] = []
        answers: list[MemberAnswer] = []
        client_error: ServingError | None = None
        for index, (servable, result) in enumerate(zip(members, results, strict=True)):
            if isinstance(result, BaseException):
                if not isinstance(result, ServingError | TimeoutError):
                    raise result
                message = result.message if isinstance(result, ServingError) else "Deadline exceeded"
                if isinstance(result, ServingError) and result.http_status < 500:
                    client_error = client_error or result
                self._metrics.ensemble_member_failures.labels(self.name, servable).inc()
                answers.append(MemberAnswer(servable, error=message))
                continue
            version, probabilities = result
            replied.append((index, probabilities))
            answers.append(MemberAnswer(servable, version, probabilities.argmax(axis=-1).tolist()))
        if len(replied) < self.config.needed:
            if client_error is not None:
                raise client_error
            raise Unavailable(
                f"Ensemble {self.name!r}: {len(replied)} of {len(members)} members answered; "
                f"quorum is {self.config.needed}"
            )
        calibration = await self.calibration()
        if calibration is not None:
            probabilities = calibration.combine(replied)
            class_id = probabilities.argmax(axis=-1).astype(np.int64)
            if self.config.voting == "hard":
                class_id = _hard_vote([p for _, p in replied], probabilities)
        else:
            weights = [self.config.weights[i] for i, _ in replied] if self.config.weights else None
            probabilities, class_id = vote([p for _, p in replied], self.config.voting, weights)
        degraded = len(replied) < len(members)
        self._metrics.ensemble_answers.labels(self.name, str(degraded).lower()).inc()
        call.answered_by(self.name, "")
        call.degraded = degraded
        return self._response(probabilities, class_id, answers), answers

    async def _member(
        self, servable: str, request: Predict, call: CallContext, forward: Forward
    ) -> tuple[str, np.ndarray]:
        deadline = min(call.deadline, time.monotonic() + self.config.member_timeout_s)
        member_call = CallContext(request_id=call.request_id, deadline=deadline, request_key=call.request_key)
        with tracing.span(f"ensemble member {servable}", {"tensorgate.ensemble": self.name}):
            answer = await forward(servable, request.for_servable(servable), member_call)
        if "probabilities" not in answer.outputs:
            raise InvalidInput(f"Ensemble member {servable!r} did not return 'probabilities'")
        probabilities = answer.outputs["probabilities"]
        if probabilities.ndim != 2:
            raise InvalidInput(f"Ensemble member {servable!r} returned probabilities of rank {probabilities.ndim}")
        return answer.version_text, probabilities

    def _response(self, probabilities: np.ndarray, class_id: np.ndarray, answers: list[MemberAnswer]) -> Prediction:
        batch = class_id.shape[0]
        votes = np.full((batch, len(answers)), -1, dtype=np.int64)
        for column, answer in enumerate(answers):
            if answer.class_ids is not None and len(answer.class_ids) == batch:
                votes[:, column] = answer.class_ids
        outputs = {"probabilities": probabilities, "class_id": class_id, "member_class_ids": votes}
        return Prediction(outputs, self.name)


def _hard_vote(member_probabilities: list[np.ndarray], probabilities: np.ndarray) -> np.ndarray:
    """Most top-1 votes wins; ties go to the higher combined probability (as the ensemble SavedModel)."""
    classes = probabilities.shape[-1]
    counts = sum(np.eye(classes, dtype=np.float64)[p.argmax(axis=-1)] for p in member_probabilities)
    # Vote counts differ by whole numbers; half a probability (< 0.5) only breaks ties.
    score: np.ndarray = counts + 0.5 * probabilities
    return score.argmax(axis=-1).astype(np.int64)
