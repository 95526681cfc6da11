"""`gmnae zoo import mnist-inr`: the DWSNets MNIST-INR zoo (Navon et al. 2023) from the files on disk.

    gmnae zoo import mnist-inr --src data/mnist-inrs                            # -> zoo/mnist-inr
    gmnae zoo import mnist-inr --src data/mnist-inrs --images data/mnist        # + target images
    gmnae zoo import mnist-inr --src data/mnist-inrs --splits data/mnist-inrs/mnist_splits.json

`--src` is the unpacked DWSNets `mnist-inrs` folder: one folder per MNIST image,
`mnist_png_{training,testing}_{label}_{idx}/checkpoints/model_final.pth` (or `train`/`test`), each a state dict of the
SIREN 2→32→32→1 with keys `seq.{0,1,2}.{weight,bias}` (PyTorch layout already; sin(30 z), +0.5).
The folder name gives the label and the image: `idx` is the image's index in MNIST's training or
test set. Splits: `testing` -> test; `training` -> train / val, with a fixed-seed validation draw of
`--val-size` INRs (default 1/12 of them: 5,000 of the 60,000, as DWSNets); or, with `--splits`, the
DWSNets / ScaleGMN splits JSON (`{"train": {"path": [...], "label": [...]}, "val": ..., "test": ...}`):
exactly the files it lists are imported, each found under `--src` by the longest tail of its path
(so the prefix of the machine it was made on does not matter), whatever its folder is called.
The autoencoder paper's orbit datasets name their folders `mnist_png_{train,test}_{label}_{idx}_augmented_{i}`:
the suffix is accepted with or without a splits file (`augmented` = i in the metadata), and without one
the validation draw takes whole images, so every copy of one image lands in the same split. Every INR's file,
relative to `--src`, is recorded as `source`.

With `--images` (a local MNIST copy, see `gmnae.tasks.mnist`), the target images are stored in the
zoo (`mnist-images.npz`) for the INR loss, every INR's label is checked against its image, and each
INR's fit (`mse`, `psnr` against its image) goes into the metadata. Without it the loss compares
against the original INR's rendering. Resumable like the Small CNN Zoo importer (same machinery).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GmnaeError
from ..weightspace.architecture import Architecture
from .format import SPLITS, sha256_file
from .import_small_cnn_zoo import summary_line
from .shard_writer import ResumableImport, fingerprint, progress_bar

# mnist_png_{set}_{label}_{image}, and the orbit datasets' mnist_png_{set}_{label}_{image}_augmented_{i}
# ({set}: DWSNets writes training/testing, the orbit datasets train/test)
DIR_RE = re.compile(r"^mnist_png_(training|testing|train|test)_(\d+)_(\d+)(?:_augmented_(\d+))?$")
CHECKPOINT = Path("checkpoints") / "model_final.pth"
SHARD_ROWS = 8192
BLOCK_ROWS = 1024
MNIST_SET = {"training": "train", "testing": "test", "train": "train", "test": "test"}
HINT = ("the DWSNets MNIST-INR folder holds mnist_png_{training,testing}_{label}_{idx}/checkpoints/model_final.pth "
        "(the mnist-inrs download of github.com/AvivNavon/DWSNets, unpacked)")
_KEY = re.compile(r"^(?:.*\.)?(\d+)\.(?:.*\.)?(weight|bias)$")


@dataclass(frozen=True)
class INR:
    name: str       # mnist_png_training_2_23089
    mnist_set: str  # "train" | "test": the MNIST image set the image comes from
    label: int
    index: int      # the image's index in that set (-1: a splits file's INR whose folder does not say)
    path: Path
    augmented: int = -1  # orbit datasets: which transformed copy of the INR (-1: an original)


def inr_from_folder(name: str, path: Path) -> INR | None:
    m = DIR_RE.match(name)
    if m is None:
        return None
    return INR(name, MNIST_SET[m.group(1)], int(m.group(2)), int(m.group(3)), path,
               int(m.group(4)) if m.group(4) is not None else -1)


def find_inrs(src: Path) -> tuple[Path, list[INR]]:
    """(the folder holding the INR folders, every INR found), checking each has its checkpoint."""
    if not src.is_dir():
        raise GmnaeError(f"--src {src} is not a folder; {HINT}")
    def candidates():  # src itself first; its sub-folders only when src holds no INR folders
        yield src
        yield src / "mnist-inrs"
        yield from (d for d in sorted(src.iterdir()) if d.is_dir() and not DIR_RE.match(d.name))

    for folder in candidates():
        if not folder.is_dir():
            continue
        found, missing = [], []
        with os.scandir(folder) as it:
            for d in it:
                m = DIR_RE.match(d.name)
                if not (m and d.is_dir()):
                    continue
                path = Path(d.path) / CHECKPOINT
                if not path.is_file():
                    missing.append(d.name)
                    continue
                found.append(inr_from_folder(d.name, path))
        if missing:
            raise GmnaeError(f"{len(missing)} INR folder(s) in {folder} lack {CHECKPOINT} (first: {sorted(missing)[0]}); "
                             "the download is incomplete: unpack it again")
        if found:
            return folder, sorted(found, key=lambda e: (e.mnist_set, e.index, e.name))
    raise GmnaeError(f"no INRs in {src}: {HINT}")


def split_by_path(inrs: list[INR], val_size: int | None, seed: int) -> tuple[dict[str, list[INR]], dict]:
    train = [e for e in inrs if e.mnist_set == "train"]
    test = [e for e in inrs if e.mnist_set == "test"]
    n_val = int(round(len(train) / 12)) if val_size is None else int(val_size)
    if not 0 <= n_val <= len(train):
        raise GmnaeError(f"--val-size {n_val} is more than the {len(train)} training INRs")
    # Whole images are drawn (an orbit dataset's copies of one image share it, and must share a split); with
    # one INR per image this is the draw over INRs it always was.
    images = list(dict.fromkeys(e.index for e in train))  # sorted by image index, as `train` is
    of_image = {i: [] for i in images}
    for e in train:
        of_image[e.index].append(e)
    val_images, drawn = set(), 0
    for k in np.random.default_rng(seed).permutation(len(images)):
        if drawn >= n_val:
            break
        val_images.add(images[k])
        drawn += len(of_image[images[k]])
    splits = {"train": [e for e in train if e.index not in val_images],
              "val": [e for e in train if e.index in val_images], "test": test}
    return splits, {"split": "by path: testing -> test; training -> train/val with a fixed-seed draw of "
                             f"{n_val} validation INRs (numpy default_rng({seed}).permutation over the "
                             "training images sorted by image index; all INRs of a drawn image)",
                    "split_seed": seed, "val_size": n_val}


def listed_file(src: Path, entry: str) -> Path | None:
    """The checkpoint a splits-file entry names, under --src: the longest tail of its path that exists
    there (the file's prefix is the machine it was made on), a folder meaning its checkpoint."""
    parts = Path(entry).parts
    keep = 3 if parts[-2:] == CHECKPOINT.parts else 1  # at least the INR folder and its checkpoint
    for k in range(max(1, len(parts) - keep + 1)):
        cand = src.joinpath(*parts[k:])
        if cand.is_dir():
            cand = cand / CHECKPOINT
        if cand.is_file():
            return cand
    return None


def split_from_json(src: Path, path: Path) -> tuple[dict[str, list[INR]], dict]:
    """Exactly the INRs the splits file lists, whatever their folder names (e.g. the orbit datasets'
    `…_augmented_{i}`); label and image come from the folder name when it has them, else from the file."""
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GmnaeError(f"cannot read the splits file {path} ({e})") from e
    if not isinstance(spec, dict) or not any(s in spec for s in SPLITS):
        raise GmnaeError(f"{path} is not a DWSNets splits file ({{\"train\": {{\"path\": [...], \"label\": [...]}}, ...}})")
    splits, seen, missing = {}, set(), []
    for s in SPLITS:
        if s not in spec:
            continue
        paths, labels = spec[s].get("path", []), spec[s].get("label")
        if labels is not None and len(labels) != len(paths):
            raise GmnaeError(f"{path}: split {s} has {len(paths)} paths but {len(labels)} labels")
        chosen = []
        for i, p in enumerate(paths):
            file = listed_file(src, str(p))
            if file is None:
                missing.append(p)
                continue
            if file.resolve() in seen:
                raise GmnaeError(f"{path}: {p} is listed twice")
            seen.add(file.resolve())
            folder = file.parent.parent if file.parent.name == "checkpoints" else file.parent
            e = inr_from_folder(folder.name, file)
            if e is None:
                if labels is None:
                    raise GmnaeError(f"{path}: split {s} entry {i} ({p}) has no label, and its folder name does "
                                     "not give one (mnist_png_{set}_{label}_{image}); add a \"label\" list")
                e = INR(folder.name, "", int(labels[i]), -1, file)
            elif labels is not None and int(labels[i]) != e.label:
                raise GmnaeError(f"{path}: {folder.name} is listed with label {labels[i]}, its folder says {e.label}")
            chosen.append(e)
        splits[s] = chosen
    if missing:
        raise GmnaeError(f"{path} lists {len(missing)} INR(s) that are not in --src {src} (first: {missing[0]}); "
                         "point --src at the folder the splits file was made for")
    try:
        unlisted = sum(e.path.resolve() not in seen for e in find_inrs(src)[1])
    except GmnaeError:  # no folder of mnist_png_… INRs to compare with
        unlisted = None
    return splits, {"split": f"from the splits file {Path(path).resolve()}", "not_in_splits_file": unlisted}


def load_inr(path: Path, arch: Architecture) -> np.ndarray:
    """One DWSNets state dict -> flat parameters `[P]` in our layout (layer by layer, weight then bias)."""
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means a bad file
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]  # torch: a page on weights_only
        cause = next((line for line in lines if line.startswith("WeightsUnpickler error")), lines[0] if lines else "")
        raise GmnaeError(f"{path} cannot be read as a PyTorch state dict ({type(e).__name__}: {cause[:160]}); "
                         "the download is corrupt: unpack it again") from e
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise GmnaeError(f"{path} holds a {type(sd).__name__}, not a state dict")
    items = [(k, v) for k, v in sd.items() if torch.is_tensor(v) and v.dtype.is_floating_point]
    if all(_KEY.match(k) for k, _ in items):  # seq.{i}.{weight,bias}: order by layer, weight first
        items.sort(key=lambda kv: (int(_KEY.match(kv[0]).group(1)), _KEY.match(kv[0]).group(2) != "weight"))
    want = [tuple(s) for _, s in arch.param_shapes]
    got = [tuple(v.shape) for _, v in items]
    if got != want:
        raise GmnaeError(f"{path}: state dict {', '.join(f'{k} {tuple(v.shape)}' for k, v in items)} is not the "
                         f"MNIST-INR SIREN ({arch.describe()}, shapes {want})")
    return torch.cat([v.reshape(-1).float() for _, v in items]).numpy()


def import_mnist_inr(src, out=None, images=None, splits=None, name: str = "mnist-inr", val_size: int | None = None,
                     split_seed: int = 0, skip_nonfinite: bool = False, shard_rows: int = SHARD_ROWS,
                     progress: bool = True, stop_after_shards: int | None = None) -> Path:
    """Import (or resume importing) the DWSNets MNIST-INR folder; returns the zoo folder."""
    import torch

    from ..tasks import mnist
    from ..tasks.grid import coordinate_grid, psnr as to_psnr
    from ..weightspace import siren_render

    t0 = time.perf_counter()
    if shard_rows < 1:  # before .build/ exists: nothing is left behind
        raise GmnaeError(f"--shard-rows {shard_rows}: must be at least 1 (default {SHARD_ROWS})")
    src = Path(src).expanduser()
    arch = Architecture.siren(name="mnist-inr-siren-2-32-32-1")
    if splits:  # the files it lists, wherever they are below --src
        if not src.is_dir():
            raise GmnaeError(f"--src {src} is not a folder; {HINT}")
        folder = src
        parts, split_info = split_from_json(src, Path(splits).expanduser())
        inrs = [e for rows in parts.values() for e in rows]
    else:
        folder, inrs = find_inrs(src)
        parts, split_info = split_by_path(inrs, val_size, split_seed)

    arrays: dict[str, np.ndarray] = {}
    if images is not None:
        needed = sorted({e.mnist_set for rows in parts.values() for e in rows if e.mnist_set})
        for s in needed:
            arrays[f"{s}_images"], arrays[f"{s}_labels"] = mnist.load_mnist(images, s)
        bad = []
        for rows in parts.values():
            for e in rows:
                if e.index < 0:
                    raise GmnaeError(f"--images: {e.path} does not say which MNIST image it fits (its folder is not "
                                     "mnist_png_{set}_{label}_{image}…); import without --images")
                labels = arrays[f"{e.mnist_set}_labels"]
                if e.index >= len(labels) or labels[e.index] != e.label:
                    bad.append(e)
        if bad:
            e = bad[0]
            labels = arrays[f"{e.mnist_set}_labels"]
            what = (f"image {e.index} of the MNIST {e.mnist_set} set is a {labels[e.index]}"
                    if e.index < len(labels) else f"the MNIST {e.mnist_set} set has only {len(labels)} images")
            raise GmnaeError(f"{len(bad)} INR(s) do not match the images in {images}: {e.name} says label {e.label} "
                             f"but {what}; --images must be the MNIST copy the INRs were fitted on")

    out = Path(out) if out else Path("zoo") / name
    config = {"importer": "mnist-inr", "version": 1, "name": name, "src": str(folder.resolve()),
              "n_found": len(inrs), "images": str(Path(images).resolve()) if images is not None else None,
              "splits": fingerprint(Path(splits).expanduser()) if splits else None, "split_seed": split_seed,
              "val_size": val_size, "shard_rows": int(shard_rows)}
    build = ResumableImport(out, config)
    total = sum(len(v) for v in parts.values())
    done = sum(e["planned"] for s, rows in parts.items() for k in range(-(-len(rows) // shard_rows))
               if (e := build.finished(f"{s}-{k:05d}.h5")))
    bar = progress_bar(total, f"importing {name}", progress, initial=done)
    coords = coordinate_grid(28)
    skipped = 0

    def blocks(entries: list[INR], fit: dict):
        for a in range(0, len(entries), BLOCK_ROWS):
            sub = entries[a:a + BLOCK_ROWS]
            params = np.stack([load_inr(e.path, arch) for e in sub]).astype(np.float32)
            finite = np.isfinite(params).all(axis=1)
            if not finite.all() and not skip_nonfinite:
                e = sub[int(np.argmin(finite))]
                raise GmnaeError(f"{e.path} has NaN/Inf parameters; pass --skip-nonfinite to leave such INRs out")
            if arrays:
                target = np.stack([arrays[f"{e.mnist_set}_images"][e.index] for e in sub]).reshape(len(sub), -1)
                with torch.no_grad():
                    render = siren_render(arch, torch.from_numpy(params), coords).squeeze(-1)
                    mse = (render - torch.from_numpy(target.astype(np.float32) / 255.0)).pow(2).mean(dim=1)
                fit.setdefault("mse", []).append(mse.double().numpy())
                fit.setdefault("psnr", []).append(to_psnr(mse).double().numpy())
            bar.update(len(sub))
            yield params[finite], finite

    try:
        for s in SPLITS:
            rows = parts.get(s, [])
            for k, a in enumerate(range(0, len(rows), shard_rows)):
                sub = rows[a:a + shard_rows]
                fit: dict[str, list] = {}

                def meta(sub=sub, fit=fit):
                    cols = {"label": np.array([e.label for e in sub], np.int64),
                            "image_index": np.array([e.index for e in sub], np.int64),
                            "mnist_set": np.array([e.mnist_set for e in sub], dtype=object),
                            "path": np.array([f"{e.name}/{CHECKPOINT.as_posix()}" for e in sub], dtype=object),
                            # where each INR was read from, relative to --src
                            "source": np.array([_relative(e.path, folder) for e in sub], dtype=object),
                            "augmented": np.array([e.augmented for e in sub], np.int64)}
                    cols.update({k: np.concatenate(v) for k, v in fit.items()})
                    return cols

                entry = build.shard(s, f"{s}-{k:05d}.h5", arch.n_params, len(sub),
                                    lambda sub=sub, fit=fit: blocks(sub, fit), meta, stop_after=stop_after_shards)
                skipped += entry["planned"] - entry["count"]
    finally:
        bar.close()

    task = {"name": "mnist", "kind": "inr", "resolution": 28, "range": [0, 1],
            "target": "mnist-images" if arrays else "inr-rendering", "images": None}
    if arrays:
        task["images"] = mnist.ZOO_IMAGES

    def store_images():
        if arrays:
            mnist.save_zoo_images(out / mnist.ZOO_IMAGES, arrays)
            task["images_sha256"] = sha256_file(out / mnist.ZOO_IMAGES)

    counts = {s: sum(e["count"] for e in build.shards.get(s, [])) for s in SPLITS}
    info = {"source": {"zoo": "MNIST-INR (DWSNets, Navon et al. 2023)", "src": str(folder.resolve()),
                       "images": str(Path(images).resolve()) if images is not None else None},
            "import": {"importer": "gmnae zoo import mnist-inr", **split_info, "found": len(inrs), "counts": counts,
                       "skipped_nonfinite": int(skipped), "seconds": round(time.perf_counter() - t0, 3)}}
    build.finish(name, arch, task, info, before_manifest=store_images)
    return out


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.as_posix()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--src", required=True, help="the DWSNets mnist-inrs folder (mnist_png_*/checkpoints/model_final.pth)")
    p.add_argument("--images", help="a local MNIST copy (idx files, gz or not, or mnist_png folders): target images")
    p.add_argument("--splits", help="a DWSNets/ScaleGMN splits JSON (default: split by path, fixed seed)")
    p.add_argument("--name", default="mnist-inr", help="zoo name (default mnist-inr)")
    p.add_argument("--out", help="zoo folder (default zoo/NAME)")
    p.add_argument("--val-size", type=int, help="validation INRs drawn from the training INRs (default 1/12)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the validation draw (default 0)")
    p.add_argument("--skip-nonfinite", action="store_true", help="leave out INRs with NaN/Inf parameters")
    p.add_argument("--shard-rows", type=int, default=SHARD_ROWS, help=f"INRs per shard (default {SHARD_ROWS})")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from .commands import resumable

    with resumable("import"):
        out = import_mnist_inr(args.src, args.out, images=args.images, splits=args.splits, name=args.name,
                               val_size=args.val_size, split_seed=args.split_seed,
                               skip_nonfinite=args.skip_nonfinite, shard_rows=args.shard_rows,
                               progress=not args.no_progress)
    print(summary_line(out))
    return 0
