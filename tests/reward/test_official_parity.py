"""With k = 1 and exact mode, co_reward equals the official Co-Reward reward.

``official_rewards`` restates, from the published behaviour (verl's last-box extraction,
``Counter.most_common`` over non-blank answers of the twin, reward 1 iff equal and the
label is non-empty), what the official reward manager computes for one batch. Responses
are drawn from the forms the official extractor handles; the forms where we deliberately
differ (``\\fbox``, mixed box styles) are tested in tests/answers/test_extract.py.
"""
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_coreward.reward import RewardConfig, Rollout, score_rollouts


def official_extract(text: str) -> str:
    if "\\boxed " in text:
        return text.split("\\boxed ")[-1].split("$")[0]
    idx = text.rfind("\\boxed")
    if idx < 0:
        return ""
    depth = 0
    for i in range(idx, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                box = text[idx : i + 1]
                return box[len("\\boxed{") : -1] if box.startswith("\\boxed{") else ""
    return ""


def official_vote(answers):
    kept = [a for a in answers if a.strip() != ""]
    return Counter(kept).most_common(1)[0][0] if kept else ""


def official_rewards(ori, aug):
    """ori/aug: {uid: [response, ...]} -> (rewards_ori, rewards_aug) in dict order."""
    ans_o = {u: [official_extract(r) for r in rs] for u, rs in ori.items()}
    ans_a = {u: [official_extract(r) for r in rs] for u, rs in aug.items()}
    lab_o = {u: official_vote(a) for u, a in ans_a.items()}
    lab_a = {u: official_vote(a) for u, a in ans_o.items()}
    ro = [1.0 if a == lab_o[u] and lab_o[u] != "" else 0.0 for u in ori for a in ans_o[u]]
    ra = [1.0 if a == lab_a[u] and lab_a[u] != "" else 0.0 for u in aug for a in ans_a[u]]
    return ro, ra


ANSWERS = st.sampled_from(["1", "2", "12", r"\frac{1}{2}", "0.5", " ", "", "x+1", " 2", "{3}"])
RESPONSE = st.one_of(
    ANSWERS.map(lambda a: f"Thus \\boxed{{{a}}}."),
    ANSWERS.map(lambda a: f"first \\boxed{{9}} then \\boxed{{{a}}}"),
    st.sampled_from(["1", "2", "7"]).map(lambda a: f"$\\boxed {a}$ done"),
    st.just("no box at all"),
    st.just("truncated \\boxed{12"),
)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.data())
def test_equals_official(n_pairs, n, data):
    ori = {u: data.draw(st.lists(RESPONSE, min_size=n, max_size=n)) for u in range(n_pairs)}
    aug = {u: data.draw(st.lists(RESPONSE, min_size=n, max_size=n)) for u in range(n_pairs)}
    expected_o, expected_a = official_rewards(ori, aug)
    rollouts = [Rollout(u, 0, r) for u, rs in ori.items() for r in rs]
    rollouts += [Rollout(u, 1, r) for u, rs in aug.items() for r in rs]
    got = score_rollouts(rollouts, RewardConfig("co_reward", "exact")).rewards
    assert got == expected_o + expected_a
