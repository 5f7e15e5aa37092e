"""QM9: the 130,831 molecules shipped by the PyPI package ``qm9pack``, PyG's own loader, a synthetic miniature.

``qm9pack`` (1.0.3) ships ``qm9pack/data/qm9_part{1,2,3}.csv`` (43,610 + 43,611 + 43,610 = 130,831
molecules; the 3,054 "uncharacterized" molecules of the original release are absent, as in PyG) and
``qm9_polarizability.csv`` (polarizability tensor components, not used here). Each row holds the XYZ
file name, the 1-based GDB index, SMILES, InChI, element list, coordinates in Å and the DFT properties
in their original units (Hartree, Debye, bohr³, bohr², GHz, cal/(mol K)). :func:`parse_qm9pack_csv`
maps them onto the 19 targets of :class:`torch_geometric.datasets.QM9` in PyG's order and units:

====  =========  =====================================  ============
 idx  target     qm9pack column                         conversion
====  =========  =====================================  ============
 0    μ          Dipole_debye                           D
 1    α          Polarizability_bohr3                   a0³
 2-4  ε_HOMO ..  HOMO_au, LUMO_au, HOMO_LUMO_gap_au     Ha → eV
 5    ⟨R²⟩       R2_bohr2                               a0²
 6-10 ZPVE,U0..  ZPVE_au, InternalEnergy_0K_au, ...     Ha → eV
 11   c_v        Heatcapacity_Cv_cal_mol_K              cal/(mol K)
12-15 U0_atom..  U0/U/H/G minus PyG's per-atom refs     eV
16-18 A, B, C    RotA_GHz, RotB_GHz, RotC_GHz           GHz
====  =========  =====================================  ============

The atomisation energies 12-15 are not in qm9pack; they are computed as the molecular energy minus
the sum of the free-atom reference energies that PyG itself uses (``QM9.atomref``), which equals PyG's
value up to the rounding of the kcal/mol column in ``gdb9.sdf.csv``. Bond graphs and the 11 rdkit atom
features ``x`` of PyG are not produced (qm9pack has no bond table; SchNet/SEGNN build radius graphs).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch_geometric.data import Data, InMemoryDataset

from constrained_eq._utils.atomic_io import atomic_torch_save
from constrained_eq.data._common import random_split_indices, require_files
from constrained_eq.data._safe import UnsafeFileError, no_code_from_files

__all__ = [
    "QM9_TARGETS",
    "HAR2EV",
    "QM9PACK_FILES",
    "qm9pack_data_dir",
    "parse_qm9pack_csv",
    "QM9Pack",
    "qm9_split",
    "qm9_from_pyg_root",
    "synthetic_qm9",
]

HAR2EV = 27.211386246
QM9_TARGETS = (
    "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "cv",
    "U0_atom", "U_atom", "H_atom", "G_atom", "A", "B", "C",
)  # fmt: skip
QM9PACK_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
# Free-atom reference energies in eV for U0, U, H, G (PyG's ``atomrefs[7..10]``), index = H, C, N, O, F.
_ATOMREF_EV = torch.tensor(
    [
        [-13.61312172, -1029.86312267, -1485.30251237, -2042.61123593, -2713.48485589],
        [-13.5745904, -1029.82456413, -1485.26398105, -2042.5727046, -2713.44632457],
        [-13.54887564, -1029.79887659, -1485.2382935, -2042.54701705, -2713.42063702],
        [-13.90303183, -1030.25891228, -1485.71166277, -2043.01812778, -2713.88796536],
    ],
    dtype=torch.float64,
)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ZCOL = {1: 0, 6: 1, 7: 2, 8: 3, 9: 4}
_PLAIN = ["Dipole_debye", "Polarizability_bohr3"]
_HARTREE_A = ["HOMO_au", "LUMO_au", "HOMO_LUMO_gap_au"]
_HARTREE_B = ["ZPVE_au", "InternalEnergy_0K_au", "InternalEnergy_298K_au", "Enthalphy_298K_au",
              "GibbsFreeEnergy_298K_au"]  # fmt: skip
_REQUIRED = ["Index", "SMILES", "Elements", "XYZ_Ang", "R2_bohr2", "Heatcapacity_Cv_cal_mol_K",
             "RotA_GHz", "RotB_GHz", "RotC_GHz", *_PLAIN, *_HARTREE_A, *_HARTREE_B]  # fmt: skip


def qm9pack_data_dir() -> Path | None:
    """Locate ``qm9pack/data`` of an installed ``qm9pack`` without importing it.

    ``import qm9pack`` needs ``pkg_resources``; :func:`importlib.util.find_spec` only locates the package.

    Returns:
        The data folder, or ``None`` when the package is not installed.
    """
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _row_to_data(row: dict[str, str]) -> Data:
    symbols = [s.strip().strip("'\"") for s in row["Elements"].strip().strip("[]").split(",") if s.strip()]
    try:
        z = torch.tensor([_Z[s] for s in symbols], dtype=torch.long)
    except KeyError as err:
        raise ValueError(f"Expected 'Elements' to be among {sorted(_Z)} (got {row['Elements']!r})") from err
    # Coordinates are written Mathematica-style ("0." for 0.0), which is not JSON: parse the numbers.
    coords = [float(v) for v in _NUMBER.findall(row["XYZ_Ang"])]
    if len(coords) != 3 * z.numel():
        raise ValueError(f"Expected 'XYZ_Ang' to hold {3 * z.numel()} numbers (got {len(coords)})")
    pos = torch.tensor(coords, dtype=torch.float64).reshape(-1, 3)
    f = {k: float(row[k]) for k in _REQUIRED[4:]}
    energies = torch.tensor([f[k] for k in _HARTREE_B[1:]], dtype=torch.float64) * HAR2EV
    refs = _ATOMREF_EV[:, [_ZCOL[int(a)] for a in z]].sum(dim=1)
    y = [f["Dipole_debye"], f["Polarizability_bohr3"], *(f[k] * HAR2EV for k in _HARTREE_A), f["R2_bohr2"],
         *(f[k] * HAR2EV for k in _HARTREE_B), f["Heatcapacity_Cv_cal_mol_K"], *(energies - refs).tolist(),
         f["RotA_GHz"], f["RotB_GHz"], f["RotC_GHz"]]  # fmt: skip
    index = int(row["Index"])
    return Data(
        z=z,
        pos=pos.to(torch.float32),
        y=torch.tensor(y, dtype=torch.float32).view(1, -1),
        idx=index - 1,
        name=f"gdb_{index}",
        smiles=row["SMILES"],
    )


def parse_qm9pack_csv(path: str | os.PathLike[str], limit: int | None = None) -> Iterator[Data]:
    """Parse one ``qm9pack`` CSV file into PyG :class:`~torch_geometric.data.Data` objects.

    Args:
        path: A ``qm9_part*.csv`` file (header row + one quoted row per molecule).
        limit: Stop after this many molecules.

    Yields:
        ``Data(z, pos [Å], y [1, 19] in PyG order/units, idx = GDB index - 1, name, smiles)``.
    """
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"Expected 'columns' of {path} to include {missing} (got {reader.fieldnames})")
        for i, row in enumerate(reader):
            if limit is not None and i >= limit:
                return
            yield _row_to_data(row)


class QM9Pack(InMemoryDataset):
    """QM9 read from ``qm9pack``'s CSV files, processed once into ``root/processed`` (atomic save).

    Args:
        root: Cache folder; the processed file is ``root/processed/qm9pack_<all|limit>.pt``.
        source_dir: Folder with ``qm9_part1.csv`` .. ``qm9_part3.csv``; defaults to the installed
            package's data folder.
        limit: Keep only the first ``limit`` molecules (file order); cached separately.
        transform: PyG transform applied on access.
        pre_transform: PyG transform applied before caching.
        force_reload: Re-process even if the cache exists.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        source_dir: str | os.PathLike[str] | None = None,
        limit: int | None = None,
        transform: Callable[[Data], Data] | None = None,
        pre_transform: Callable[[Data], Data] | None = None,
        force_reload: bool = False,
    ) -> None:
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"Expected 'limit' to be a positive int or None (got {limit!r})")
        if source_dir is None:
            source_dir = qm9pack_data_dir()
            if source_dir is None:
                raise FileNotFoundError(
                    f"QM9Pack: package 'qm9pack' is not installed and no 'source_dir' was given. Install it "
                    f"(pip install qm9pack, extra 'qm9') or pass a folder holding {list(QM9PACK_FILES)}."
                )
        self.source_dir = Path(source_dir)
        self.limit = limit
        with no_code_from_files():  # the cache is read as plain data; anything else is rebuilt, never run
            try:
                super().__init__(str(root), transform, pre_transform, None, force_reload=force_reload)
                self.load(self.processed_paths[0])
            except UnsafeFileError as err:
                if force_reload:
                    raise
                warnings.warn(f"{err}; rebuilding the QM9Pack cache from {self.source_dir}", RuntimeWarning,
                              stacklevel=2)
                super().__init__(str(root), transform, pre_transform, None, force_reload=True)
                self.load(self.processed_paths[0])

    @property
    def raw_dir(self) -> str:  # noqa: D102
        return str(self.source_dir)

    @property
    def raw_file_names(self) -> list[str]:  # noqa: D102
        return list(QM9PACK_FILES)

    @property
    def processed_file_names(self) -> list[str]:  # noqa: D102
        return [f"qm9pack_{'all' if self.limit is None else self.limit}.pt"]

    def download(self) -> None:
        """Never downloads: raises with the expected file names and folder (unless already cached)."""
        if all(os.path.isfile(p) for p in self.processed_paths) and not self.force_reload:
            return
        require_files(self.source_dir, QM9PACK_FILES, "QM9Pack", "Install the PyPI package 'qm9pack'.")

    def process(self) -> None:
        """Parse the CSV files in order and save the collated dataset atomically."""
        require_files(self.source_dir, QM9PACK_FILES, "QM9Pack", "Install the PyPI package 'qm9pack'.")
        data_list: list[Data] = []
        for name in QM9PACK_FILES:
            left = None if self.limit is None else self.limit - len(data_list)
            if left is not None and left <= 0:
                break
            data_list.extend(parse_qm9pack_csv(self.source_dir / name, limit=left))
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        data, slices = self.collate(data_list)
        atomic_torch_save((data.to_dict(), slices, data.__class__), self.processed_paths[0])


def qm9_split(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded shuffled 80/10/10 split used by ACE for SchNet on PyG's QM9.

    Args:
        n: Dataset size (130,831 for the full set).
        seed: Permutation seed.

    Returns:
        ``{"train", "val", "test"}`` index tensors.
    """
    return random_split_indices(n, (0.8, 0.1, 0.1), seed)


def _rdkit_available() -> bool:
    try:
        import rdkit  # noqa: F401
    except ImportError:
        return False
    return True


def qm9_from_pyg_root(root: str | os.PathLike[str], **kwargs: object) -> InMemoryDataset:
    """Open :class:`torch_geometric.datasets.QM9` on a local root without ever downloading.

    With rdkit installed PyG processes ``root/raw/{gdb9.sdf, gdb9.sdf.csv, uncharacterized.txt}``;
    without rdkit it instead loads its pre-processed ``root/raw/qm9_v3.pt``. A previously processed
    ``root/processed/data_v3.pt`` is reused when it is plain data. Every file of the root is read with
    ``torch.load(weights_only=True)`` only (see :mod:`constrained_eq.data._safe`): a file that pickles
    anything else is refused, never unpickled, and nothing in the root is deleted.

    Args:
        root: Dataset root holding ``raw/`` (and, after the first run, ``processed/``).
        **kwargs: Forwarded to ``QM9`` (``transform``, ``pre_transform``, ``force_reload``...).

    Returns:
        The PyG QM9 dataset.

    Raises:
        FileNotFoundError: Naming the raw folder and the files it must hold.
        UnsafeFileError: A ``.pt`` file of the root that is not plain data (named; it was not unpickled).
    """
    from torch_geometric.datasets import QM9

    class _LocalQM9(QM9):
        def download(self) -> None:
            if all(os.path.isfile(p) for p in self.processed_paths) and not kwargs.get("force_reload"):
                return
            if _rdkit_available():
                hint = "(rdkit is installed, so PyG processes the raw SDF/CSV files)."
            else:
                hint = (
                    "(rdkit is not installed, so PyG reads its pre-processed 'qm9_v3.pt' instead of "
                    "gdb9.sdf/gdb9.sdf.csv/uncharacterized.txt; install rdkit to use the raw files)."
                )
            require_files(self.raw_dir, self.raw_file_names, "QM9 (PyG)", hint)

    with no_code_from_files():
        return _LocalQM9(str(root), **kwargs)  # type: ignore[arg-type]


def synthetic_qm9(num_molecules: int = 16, min_atoms: int = 3, max_atoms: int = 9, seed: int = 0) -> list[Data]:
    """SYNTHETIC stand-in for QM9: random small "molecules" with made-up but smooth targets.

    Atoms (H, C, N, O, F) are placed by a random walk with 1.0-1.6 Å steps. Targets (19 columns, PyG
    layout) are deterministic rotation-invariant functions of the geometry (e.g. ⟨R²⟩ = Σ|r - c|²,
    energies = Σ pair terms), so models can fit them; the values are not chemistry.

    Args:
        num_molecules: Number of molecules.
        min_atoms: Minimum atoms per molecule.
        max_atoms: Maximum atoms per molecule.
        seed: Generator seed.

    Returns:
        A list of ``Data(z, pos, y[1, 19], idx, name="synthetic_<i>")``.
    """
    if not 1 <= min_atoms <= max_atoms:
        raise ValueError(f"Expected 'min_atoms' <= 'max_atoms' and >= 1 (got {min_atoms}, {max_atoms})")
    gen = torch.Generator().manual_seed(seed)
    zs = torch.tensor([1, 6, 7, 8, 9])
    out: list[Data] = []
    for i in range(num_molecules):
        n = int(torch.randint(min_atoms, max_atoms + 1, (1,), generator=gen))
        z = zs[torch.randint(0, 5, (n,), generator=gen)]
        steps = torch.randn(n, 3, generator=gen)
        steps = steps / steps.norm(dim=1, keepdim=True) * (1.0 + 0.6 * torch.rand(n, 1, generator=gen))
        pos = torch.cumsum(steps, dim=0)
        pos = pos - pos.mean(0)
        d = torch.cdist(pos, pos) + torch.eye(n)
        zz = z.double().outer(z.double())
        pair = (zz / d.double()).triu(1).sum()
        r2 = (pos.double() ** 2).sum()
        base = torch.tensor([r2.sqrt(), r2 / n, -0.2 * pair / n, 0.1 * pair / n, 0.3 * pair / n, r2, 0.01 * n])
        energy = -10.0 * z.double().sum() - 0.5 * pair
        y = torch.cat([base, energy.repeat(4) + torch.arange(4.0), torch.tensor([float(n)]),
                       (energy + 10.0 * z.double().sum()).repeat(4), 1.0 / (1.0 + r2).repeat(3)])  # fmt: skip
        out.append(Data(z=z, pos=pos, y=y.float().view(1, -1), idx=i, name=f"synthetic_{i}"))
    return out


def _main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - convenience entry point
    root = (argv or sys.argv[1:] or ["data/qm9pack"])[0]
    ds = QM9Pack(root)
    print(f"{len(ds)} molecules cached in {root}")
