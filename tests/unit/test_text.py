from core.text import a


def test_the_article_follows_the_word():
    assert a("image", capital=True) == "An image"
    assert a("kickstart") == "a kickstart"
    assert a("erase") == "an erase"
    assert a("preseed", capital=True) == "A preseed"
