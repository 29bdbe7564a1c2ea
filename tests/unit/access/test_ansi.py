"""Session transcripts: terminal output as searchable plain text, however the chunks split it."""

from access.ansi import Transcript, plain

SCREEN = (
    b"\x1b]0;root@web01: ~\x07\x1b[01;32mroot@web01\x1b[00m:\x1b[01;34m~\x1b[00m# ls\r\n"
    b"\x1b[0m\x1b[01;34mbin\x1b[0m  notes.txt\r\n"
    b"\x1b[?2004hprogress 10%\rprogress 99%\r\n"
    b"typo\x08 \x08\x08 \x08po\r\n"
) + "caf\u00e9\r\n".encode()
TEXT = "root@web01:~# ls\nbin  notes.txt\nprogress 10%progress 99%\ntypo\ncafé\n"


def test_escapes_carriage_returns_and_backspaces_are_folded():
    assert plain("a\x1b[31mb\x1b(Bc\x07\x00d") == "abcd"
    transcript = Transcript(10_000)
    transcript.feed(SCREEN)
    assert transcript.text() == TEXT


def test_any_split_of_the_stream_gives_the_same_text():
    for size in (1, 2, 3, 5, 7):
        transcript = Transcript(10_000)
        for start in range(0, len(SCREEN), size):
            transcript.feed(SCREEN[start : start + size])
        assert transcript.text() == TEXT, size


def test_the_transcript_stops_at_its_cap():
    transcript = Transcript(12)
    transcript.feed(b"0123456789\r\n")
    transcript.feed(b"abcdef\r\n")
    transcript.feed(b"more")
    assert transcript.text() == "0123456789\na" and transcript.full
