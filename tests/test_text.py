from bot.text import sentences


def test_sentences_split_and_drop_datelines() -> None:
    got = sentences("Bamako – Soldaten zerstörten zwei Lager. Dr. Meier sagte das am Montag.", "de")
    assert got[0] == "Soldaten zerstörten zwei Lager."
    assert len(got) == 2


def test_paragraphs_and_date_lines() -> None:
    got = sentences("date 2022-01 Brüssel (dpa) – Die Gespräche beginnen heute.\n\nZweiter Absatz.")
    assert got == ["Die Gespräche beginnen heute.", "Zweiter Absatz."]


def test_a_backslash_line_break_of_wire_archives_is_a_space() -> None:
    got = sentences("Russia builds new missile\\systems, President Vladimir\\Putin said.", "en")
    assert got == ["Russia builds new missile systems, President Vladimir Putin said."]
