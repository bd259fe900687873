from paddiff.interfaces import SafetyFilter, Verdict
from paddiff_example_scheduler import ExampleEulerScheduler


class ClashingScheduler(ExampleEulerScheduler):
    """Registered under the example's name to test clash resolution."""


class WordFilter(SafetyFilter):
    """Blocks prompts containing a configured word (a minimal, working safety-filter plugin)."""

    def __init__(self, word="forbidden"):
        self.word = word

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def check_prompt(self, text):
        if self.word in text.lower():
            return Verdict(False, reason="test word", category="test", matched=self.word)
        return Verdict(True)

    def check_images(self, images):
        return [Verdict(True) for _ in images]
