"""Importing the authors' published Sat2Sound checkpoints (``sat2sound import``).

The released files are PyTorch Lightning ``.ckpt`` files of the authors' ``sat2soundModel`` (repository
``mvrl/sat2sound``). This room holds what reading and checking them needs:

- ``reader``: the safe read (``torch.load(weights_only=True, mmap=True)``) and the outer checks;
- ``keymap``: the strict, versioned mapping of every authors' key (mapped, checked or dropped with a reason);
- ``importer`` / ``cli``: the import into this project's checkpoint folder;
- ``reference`` / ``reference_htsat``: an independent re-statement of the authors' model, written only from their
  public code, whose ``state_dict()`` has exactly the keys and shapes of theirs; the import is checked against it.
  These two modules and ``standin`` must not import ``core``, ``world`` or any other project room: only torch,
  numpy and ``contracts`` (independence is their point; a test checks it);
- ``standin`` / ``t5_standin``: a checkpoint in the authors' Lightning layout with random values, and a random T5
  encoder folder, to prove an import and time the towers without the real weights.
"""
