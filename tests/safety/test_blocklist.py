"""The blocklist check: whole words whatever their case and accents, phrases across whitespace, regexes."""

from __future__ import annotations

from modelgate.safety.blocklist import BlocklistFinder, Entries, fold


def found(finder: BlocklistFinder, text: str) -> list[tuple[str, str]]:
    return [(text[s.start:s.end], s.label) for s in finder.find(text)]


def test_terms_ignore_case_and_accents_and_keep_original_positions() -> None:
    finder = BlocklistFinder([Entries("inline", ["Café Noir", "resume"])])
    assert found(finder, "Order a CAFE   noir, then my résumé") == [("CAFE   noir", "inline"), ("résumé", "inline")]
    assert found(finder, "Ça, un café\u0301 noir") == [("café\u0301 noir", "inline")]  # combining accent


def test_terms_match_whole_words_only() -> None:
    finder = BlocklistFinder([Entries("inline", ["ass", "bad word"])])
    assert found(finder, "a class assignment, bad words, passes") == []
    assert found(finder, "(ass) and bad\nword.") == [("ass", "inline"), ("bad\nword", "inline")]
    assert found(finder, "a Bad-Word, a bad_word, a bad--word") == [("Bad-Word", "inline")]


def test_patterns_match_as_written_and_are_labelled_by_list() -> None:
    finder = BlocklistFinder([Entries("inline", (), [r"\bFALCON-\d+\b"]),
                              Entries("codenames", ["Project Kestrel"], [r"(?i)\bosprey\b"])])
    assert found(finder, "falcon-7 FALCON-12 project kestrel Osprey") == [
        ("FALCON-12", "inline"), ("project kestrel", "codenames"), ("Osprey", "codenames")]


def test_fold_maps_each_folded_character_to_its_source() -> None:
    assert fold("ABC") == ("abc", None)
    text, positions = fold("Straße É")
    assert text == "strasse e" and positions == [0, 1, 2, 3, 4, 4, 5, 6, 7]  # ß folds to "ss"
