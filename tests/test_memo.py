from bot.memo import Memo


def test_each_word_is_computed_once_and_read_through_map() -> None:
    calls: list[str] = []

    def length(word: str) -> int:
        calls.append(word)
        return len(word)

    memo = Memo(length)
    assert list(map(memo.__getitem__, ["Kyiv", "Kiew", "Kyiv", "Kyiv"])) == [4, 4, 4, 4]
    assert calls == ["Kyiv", "Kiew"]


def test_a_full_memo_starts_afresh_so_memory_stays_bounded() -> None:
    memo = Memo(str.upper, limit=3)
    for word in ["a", "b", "c", "d", "e"]:
        assert memo[word] == word.upper()
    assert len(memo) <= 3 and memo["d"] == "D"
