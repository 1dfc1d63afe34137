"""Importing the authors' published Sat2Sound checkpoints.

The released files are PyTorch Lightning ``.ckpt`` files of the authors' ``sat2soundModel`` (repository
``mvrl/sat2sound``). This room holds what reading and checking them needs:

- ``reference`` / ``reference_htsat``: an independent re-statement of the authors' model, written only from their
  public code, whose ``state_dict()`` has exactly the keys and shapes of theirs; the import is checked against it.
  These two modules and ``standin`` must not import ``core``, ``world`` or any other project room: only torch,
  numpy and ``contracts`` (independence is their point).
- ``standin``: writes a checkpoint in the authors' Lightning layout with random values, to prove an import without
  the real weights.
- the import itself (reader, key map, importer, CLI), which may use ``core``.
"""
