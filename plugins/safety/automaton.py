"""Aho-Corasick multi-pattern matching in pure Python.

Built once from all patterns; a search then reads the text once, whatever the number of patterns
(Aho & Corasick, "Efficient string matching", CACM 1975). States are trie nodes; `fail[s]` is the
node of the longest proper suffix of s's string that is also a trie path, and `outputs[s]` lists
every pattern that ends at s, including those inherited along fail links, so a search never has to
walk the fail chain to report matches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator


class Automaton:
    """Finds every occurrence of any of `patterns` in a text, in one pass."""

    def __init__(self, patterns: list[str]):
        self.patterns = list(patterns)
        self.goto: list[dict[str, int]] = [{}]
        own_outputs: list[list[int]] = [[]]
        for index, pattern in enumerate(self.patterns):
            if not pattern:
                raise ValueError(f"pattern {index} is empty")
            node = 0
            for char in pattern:
                nxt = self.goto[node].get(char)
                if nxt is None:
                    nxt = len(self.goto)
                    self.goto[node][char] = nxt
                    self.goto.append({})
                    own_outputs.append([])
                node = nxt
            own_outputs[node].append(index)
        self.fail = [0] * len(self.goto)
        self.outputs: list[tuple[int, ...]] = [()] * len(self.goto)
        self._link(own_outputs)

    def _link(self, own_outputs: list[list[int]]) -> None:
        """Breadth-first, so a node's fail target (a shorter string) is finished before it."""
        queue = deque(self.goto[0].values())
        while queue:
            node = queue.popleft()
            self.outputs[node] = tuple(own_outputs[node]) + self.outputs[self.fail[node]]
            for char, child in self.goto[node].items():
                target = self.fail[node]
                while target and char not in self.goto[target]:
                    target = self.fail[target]
                self.fail[child] = self.goto[target].get(char, 0)
                queue.append(child)

    def find(self, text: str) -> Iterator[tuple[int, int, int]]:
        """(start, end, pattern index) for every occurrence, in order of `end`."""
        goto, fail, outputs, patterns = self.goto, self.fail, self.outputs, self.patterns
        node = 0
        for position, char in enumerate(text):
            while node and char not in goto[node]:
                node = fail[node]
            node = goto[node].get(char, 0)
            for index in outputs[node]:
                yield position + 1 - len(patterns[index]), position + 1, index
