"""Tags: free-form labels on machines ("gpu", "ceph-osd", "customer-a") to find them and to pick them for a batch.

The Tag row is its own table (not a text column on the machine) so that a name is spelled one way everywhere, a
tag can say what it means and carry a colour, and "every machine with tag X" is an indexed join. The colour is a
name from a fixed palette, not a hex value: the pages' CSP forbids inline styles, so each colour is a CSS class
with a light and a dark shade (static/css/tags.css), and the tag's name is always shown beside it.
"""

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

TAG_NAME_REGEX = r"^[a-z0-9][a-z0-9_-]{0,49}$"
TAG_NAME_MAX = 50
validate_tag_name = RegexValidator(
    TAG_NAME_REGEX,
    "A tag is 1 to 50 lower-case letters, digits, - and _, starting with a letter or digit (e.g. gpu, ceph-osd).",
)


class TagColour(models.TextChoices):
    NONE = "", "none"
    GREY = "grey", "grey"
    RED = "red", "red"
    ORANGE = "orange", "orange"
    YELLOW = "yellow", "yellow"
    GREEN = "green", "green"
    TEAL = "teal", "teal"
    BLUE = "blue", "blue"
    PURPLE = "purple", "purple"
    PINK = "pink", "pink"


class Tag(models.Model):
    name = models.CharField(
        max_length=TAG_NAME_MAX, unique=True, validators=[validate_tag_name], help_text="e.g. gpu, ceph-osd."
    )
    colour = models.CharField(max_length=8, choices=TagColour.choices, default=TagColour.NONE, blank=True)
    description = models.CharField(max_length=200, blank=True, help_text="What the tag means, for the next person.")

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=Q(name__regex=TAG_NAME_REGEX), name="tag_name_slug")]

    def __str__(self):
        return self.name
