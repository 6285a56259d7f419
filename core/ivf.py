"""Inverted lists of a PLAID index: for each centroid, the documents with a token assigned to it.

Stored as CSR (``offsets (n_centroids + 1,)`` into ``slots (pairs,)``), each (centroid, document)
pair once, slots increasing within a list. Built in blocks of documents so the int64 keys stay
block-sized; extended by :meth:`InvertedLists.merge` with lists over later documents, which costs
one pass over the postings instead of a rebuild from every token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .index import ragged_rows

__all__ = ["InvertedLists"]

_BLOCK_DOCS = 4096  # documents per block while building


@dataclass(frozen=True)
class InvertedLists:
    """Centroid -> document slots, as CSR.

    Attributes:
        offsets: ``(n_centroids + 1,)`` int64; list ``c`` is ``slots[offsets[c]:offsets[c + 1]]``.
        slots: ``(pairs,)`` int32 document slots, increasing within each list.
    """

    offsets: torch.Tensor
    slots: torch.Tensor

    @property
    def n_centroids(self) -> int:
        return self.offsets.numel() - 1

    @property
    def n_postings(self) -> int:
        return self.slots.numel()

    @classmethod
    def empty(cls, n_centroids: int, device: torch.device | str = "cpu") -> InvertedLists:
        return cls(
            torch.zeros(n_centroids + 1, dtype=torch.long, device=device),
            torch.zeros(0, dtype=torch.int32, device=device),
        )

    @classmethod
    def build(
        cls, codes: torch.Tensor, lengths: torch.Tensor, n_centroids: int, *, first_slot: int = 0
    ) -> InvertedLists:
        """Lists of documents ``first_slot, first_slot + 1, ...`` whose tokens' centroid ids are ``codes``.

        Args:
            codes: ``(sum(lengths),)`` centroid ids of the documents' tokens, document after document.
            lengths: ``(n_docs,)`` tokens per document (on the CPU).
            n_centroids: number of lists.
            first_slot: slot of the first document.
        """
        device = codes.device
        n_docs = lengths.numel()
        starts = torch.cumsum(lengths, 0) - lengths
        # A block's deduplicated pairs come out sorted by centroid, then slot; blocks are in slot
        # order. So after counting every list's length, each block's runs go straight to their
        # place (after the earlier blocks' part of the list): sorted lists, no global sort.
        blocks: list[tuple[torch.Tensor, torch.Tensor]] = []
        counts = torch.zeros(n_centroids, dtype=torch.long, device=device)
        for first in range(0, n_docs, _BLOCK_DOCS):
            last = min(first + _BLOCK_DOCS, n_docs)
            block_lengths = lengths[first:last]
            a = int(starts[first])
            block = codes[a : a + int(block_lengths.sum())].long()
            slot = torch.repeat_interleave(torch.arange(first, last, device=device), block_lengths.to(device))
            pairs = torch.unique(block * n_docs + slot)
            block_codes = pairs // n_docs
            counts += torch.bincount(block_codes, minlength=n_centroids)
            blocks.append((block_codes.to(torch.int16), (pairs % n_docs + first_slot).to(torch.int32)))
        offsets = torch.zeros(n_centroids + 1, dtype=torch.long, device=device)
        torch.cumsum(counts, 0, out=offsets[1:])
        slots = torch.empty(int(offsets[-1]), dtype=torch.int32, device=device)
        cursor = offsets[:-1].clone()
        blocks.reverse()
        while blocks:  # popped, so each block's memory goes as soon as it is placed
            block_codes, block_slots = blocks.pop()
            block_codes = block_codes.long()
            block_counts = torch.bincount(block_codes, minlength=n_centroids)
            run_starts = torch.cumsum(block_counts, 0) - block_counts
            shift = cursor - run_starts  # where each centroid's run of this block goes
            positions = shift.index_select(0, block_codes) + torch.arange(block_codes.numel(), device=device)
            slots[positions] = block_slots
            cursor += block_counts
        return cls(offsets, slots)

    def merge(self, later: InvertedLists) -> InvertedLists:
        """These lists followed by ``later``'s, whose slots must all be greater than this one's."""
        if not later.n_postings:
            return self
        if not self.n_postings:
            return later
        device = self.slots.device
        counts, later_counts = self.offsets.diff(), later.offsets.diff()
        centroids = torch.arange(self.n_centroids, device=device)
        # Each list keeps its own postings first, then the later ones: an old posting moves by the
        # later postings of the lists before its own, a later one by the old postings up to its own.
        slots = torch.empty(self.n_postings + later.n_postings, dtype=torch.int32, device=device)
        own = torch.repeat_interleave(centroids, counts)
        slots[torch.arange(self.n_postings, device=device) + later.offsets.index_select(0, own)] = self.slots
        theirs = torch.repeat_interleave(centroids, later_counts)
        slots[torch.arange(later.n_postings, device=device) + self.offsets.index_select(0, theirs + 1)] = later.slots
        return InvertedLists(self.offsets + later.offsets, slots)

    def postings(self, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The lists of ``centroids (n,)`` one after another: slots ``(m,)`` int64 and the owner ``(m,)`` of each."""
        starts = self.offsets.index_select(0, centroids)
        lengths = self.offsets.index_select(0, centroids + 1) - starts
        owner = torch.repeat_interleave(torch.arange(lengths.numel(), device=centroids.device), lengths)
        return self.slots.index_select(0, ragged_rows(starts, lengths, owner=owner)).long(), owner
