"""Concept changes never block the executor: the text encode runs on the worker thread,
set_concepts answers once the lists are active, identical requests are free, a flood is refused.
"""

from __future__ import annotations

import threading
import time

import pytest
from node_inproc import InProcessNode
from ros_harness import Client
from test_perception_faults import CAM_A, Feeder

from sgclip_ros.core.concepts import ConceptSet
from sgclip_ros.ros.concept_changes import ConceptChanges, RateLimited, TokenBucket

pytestmark = pytest.mark.usefixtures("needs_install")


def _lists(k: int) -> ConceptSet:
    return ConceptSet(categories=(f"thing{k}", "other"), unary=("red",), binary=("near",))


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_identical_requests_are_free_and_a_flood_is_refused_and_counted():
    clock = Clock()
    changes = ConceptChanges(TokenBucket(rate_per_s=2.0, burst=3, clock=clock))
    job, new = changes.request(_lists(1), "a", active_id="x")
    assert new
    again, new_again = changes.request(_lists(1), "a", active_id="x")  # while pending
    assert again is job and not new_again
    changes.finished(job)
    same, new_same = changes.request(_lists(1), "a", active_id=_lists(1).concepts_id)
    assert not new_same and same.done.is_set()
    for k in (2, 3):
        changes.finished(changes.request(_lists(k), "a", "x")[0])
    with pytest.raises(RateLimited, match="too many concept changes"):
        changes.request(_lists(4), "a", "x")
    clock.t += 0.5  # one token back at 2 per second
    changes.request(_lists(5), "a", "x")
    counts = changes.counts
    assert (counts.requested, counts.identical, counts.rate_limited) == (7, 2, 1)
    assert counts.applied == 3


@pytest.fixture
def node_rig(tmp_path, ros_domain):
    node = InProcessNode(
        tmp_path,
        ros_domain,
        cameras=[CAM_A],
        detections=[""],
        model_dir="untrained-tiny",
        reliability="reliable",
        qos_depth=50,
        max_stamp_age_s=0.0,
    )
    client = Client(ros_domain)
    yield node, client
    client.close()
    node.close()


def _call(client, k: int):
    from sgclip_ros.srv import SetConcepts

    lists = _lists(k)
    request = SetConcepts.Request(
        categories=list(lists.categories), unary=list(lists.unary), binary=list(lists.binary)
    )
    return client.call(SetConcepts, "/set_concepts", request)


def test_twenty_back_to_back_changes_leave_image_callbacks_flowing(node_rig):
    node, client = node_rig
    perception = node.node
    predictor = perception.predictor
    real, threads, during = predictor.set_concepts, set(), []

    def slow_encode(concepts):  # a big concept list on a slow device
        threads.add(threading.current_thread().name)
        before = sum(perception.received.values())
        time.sleep(0.3)
        result = real(concepts)
        during.append(sum(perception.received.values()) - before)
        return result

    predictor.set_concepts = slow_encode
    feeder = Feeder(client, [CAM_A])
    try:
        assert client.spin_until(lambda: sum(perception.received.values()) >= 10, 30)
        replies = [_call(client, k) for k in range(20)]
    finally:
        feeder.stop()
    assert all(r.success for r in replies), [r.message for r in replies if not r.success]
    # Each reply came once its lists were active, and the encodes ran on the worker thread.
    assert replies[-1].concepts_id == predictor.concepts.concepts_id
    assert threads == {"sgclip_inference"}
    # Frames kept arriving in the image callback while each 0.3 s encode ran (30 Hz: ~9 each).
    assert len(during) == 20 and sum(1 for n in during if n >= 3) >= 18, during
    assert predictor.stats.text_encodes > 0
    encodes = predictor.stats.text_encodes
    same = _call(client, 19)  # identical to the active lists: no encode at all
    assert same.success and predictor.stats.text_encodes == encodes
    assert perception.concept_changes.counts.identical >= 1


def test_a_flood_of_distinct_requests_is_rate_limited_with_a_reason(node_rig):
    node, client = node_rig
    from sgclip_ros.srv import SetConcepts

    futures = []
    cli = client.node.create_client(SetConcepts, "/set_concepts")
    assert client.spin_until(cli.service_is_ready, 20)
    for k in range(40):  # in volleys of 5: a service keeps the last 10 requests in flight
        lists = _lists(100 + k)
        request = SetConcepts.Request(
            categories=list(lists.categories), unary=list(lists.unary), binary=list(lists.binary)
        )
        futures.append(cli.call_async(request))
        if len(futures) % 5 == 0:
            assert client.spin_until(lambda: all(f.done() for f in futures), 30)
    replies = [f.result() for f in futures]
    refused = [r for r in replies if not r.success]
    assert refused and all("too many concept changes" in r.message for r in refused)
    counts = node.node.concept_changes.counts
    assert counts.rate_limited == len(refused) and counts.applied == 40 - len(refused)
    assert 20 <= counts.applied <= 30  # the burst, plus what refilled meanwhile
