from nemo_coreward.reward import majority_vote


def test_majority_and_ratio():
    v = majority_vote([0, 1, 1, -1])
    assert (v.winner, v.votes, v.total) == (1, 2, 4)
    assert v.ratio == 0.5


def test_tie_goes_to_first_seen():
    assert majority_vote([2, 1, 1, 2]).winner == 2
    assert majority_vote([1, 2, 2, 1]).winner == 1


def test_empty_answers_never_win():
    assert majority_vote([-1, -1, 3]).winner == 3
    v = majority_vote([-1, -1])
    assert (v.winner, v.votes, v.ratio) == (-1, 0, 0.0)
    assert majority_vote([]).ratio == 0.0
