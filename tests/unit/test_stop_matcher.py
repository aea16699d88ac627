from xinference.model.llm.engines.text_stream import StopMatcher


def feed_all(stops, pieces):
    m = StopMatcher(stops)
    out = []
    for p in pieces:
        text, hit = m.feed(p)
        out.append(text)
        if hit:
            return "".join(out), True
    return "".join(out) + m.flush(), False


def test_stop_split_across_pieces_is_held_back_and_cut():
    assert feed_all(["</s>"], ["Hello", " wor", "ld<", "/s", ">more"]) == ("Hello world", True)


def test_partial_match_that_fails_is_released():
    m = StopMatcher(["STOP"])
    assert m.feed("abc ST") == ("abc ", False)
    assert m.feed("x") == ("STx", False)


def test_no_stops_passes_through():
    assert feed_all([], ["a", "b"]) == ("ab", False)


def test_earliest_stop_wins():
    assert feed_all(["b", "a"], ["xxabyy"]) == ("xx", True)
