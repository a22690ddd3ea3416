"""A sweep of bad inputs over every command (issue #20.5): each command line must exit 2
with one stderr line ``latentcam <command>: error: ...`` (no traceback, nothing on stdout),
write nothing (no ``--out``, nothing new beside the inputs), and leave every input
byte-identical: the runs, the dataset, the checkpoint and the config file it was given.

The cases are grouped by kind (``KINDS``); docs/reliability.md gives the tally. Set
``LATENTCAM_RELIABILITY_TALLY=FOLDER`` to write each case's message to
``FOLDER/bad_input_sweep-<worker>.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from tests.reliability.tally import tally_file

from latentcam.cli import build_parser, main
from latentcam.data.classes import ATTRIBUTE_NAMES


class Bad(NamedTuple):
    """A bad command line (placeholders in braces) and the kind of mistake."""

    kind: str
    argv: str


#: Kinds of bad input, in the order of the docs' table.
KINDS = (
    "overwrite",
    "nan",
    "inf",
    "negative",
    "zero",
    "huge",
    "range",
    "not a number",
    "checkpoint",
    "config file",
    "attribute file",
    "control characters",
    "symlink loop",
    "pickle",
)

#: Placeholders: {run} {cvae} copies of the tiny vae and cvae runs; {data} a folder of 32 px
#: images; {out} a path that must stay absent; {tmp} the folder holding all of them;
#: {nan_ckpt} the vae checkpoint with one NaN weight; {nan_yaml} a config with lr: .nan;
#: {yaml_*} the config files of ``BAD_YAML``; {attr_*} CelebA datasets whose annotation
#: files are damaged as ``BAD_ATTRS`` says; {loop_*}, {dangling_*} symbolic links that
#: lead nowhere; {pickled_ckpt} {pickled_weights} {plain_pickle} {object_npy} files holding
#: pickled objects; {nl} {esc} {bel} control characters (a newline, an ANSI colour escape,
#: a bell) inside a word.
SWEEP: list[Bad] = [
    # an output that is an input, lies in one, contains one, or hits a run's own files
    Bad("overwrite", "evaluate {run} --out {run}/checkpoints/best.ckpt"),
    Bad("overwrite", "evaluate {run} --out {run}/config.yaml"),
    Bad("overwrite", "evaluate {run} --out {run}/metrics.json"),
    Bad("overwrite", "evaluate {run} --data {data} --out {data}/m.json"),
    Bad("overwrite", "report {run} --out {run}"),
    Bad("overwrite", "report {run} --out {run}/checkpoints"),
    Bad("overwrite", "reconstruct {run} --data {data} --out {data}"),
    Bad("overwrite", "train --config tiny --data {data} --out {data}"),
    Bad("overwrite", "train --config tiny --out {run}/checkpoints"),
    Bad("overwrite", "explain {run} --out {run}/logs"),
    Bad("overwrite", "explain {run} --out {tmp}"),
    Bad("overwrite", "traverse {run} --out {run}"),
    Bad("overwrite", "sample {run} --out {run}/checkpoints"),
    Bad("overwrite", "directions {run} --data {data} --out {data}/d"),
    Bad("overwrite", "synth --out {run}/checkpoints/faces --n 4 --size 32"),
    Bad("overwrite", "sweep --config tiny --out {run} --grid latent=4"),
    Bad("overwrite", "demo --out {run}/logs"),
    Bad("overwrite", "data info {data} --cache-dir {data}"),
    Bad(
        "overwrite", "import --from python os:path --weights {run}/weights.pt --out {run}/imported"
    ),
    # NaN
    Bad("nan", "train --config tiny --out {out} train.max_minutes=nan"),
    Bad("nan", "train --config tiny --out {out} --minutes nan"),
    Bad("nan", "train --config tiny --out {out} train.lr=nan"),
    Bad("nan", "train --config {nan_yaml} --out {out}"),
    Bad("nan", "train --config tiny --out {out} model.logvar_init=nan"),
    Bad("nan", "sweep --config tiny --out {out} --grid latent=4 train.beta=nan"),
    Bad("nan", "demo --out {out} --minutes nan"),
    Bad("nan", "sample {cvae} --out {out} --set Smiling=nan"),
    Bad("nan", "traverse {run} --out {out} --deltas nan"),
    # infinity
    Bad("inf", "demo --out {out} --minutes inf"),
    Bad("inf", "train --config tiny --out {out} --minutes inf"),
    Bad("inf", "train --config tiny --out {out} train.grad_clip=inf"),
    Bad("inf", "train --config tiny --out {out} train.lr=-inf"),
    Bad("inf", "sample {cvae} --out {out} --set Smiling=inf"),
    Bad("inf", "traverse {run} --out {out} --sigmas inf,1"),
    # negative where it makes no sense
    Bad("negative", "train --config tiny --out {out} --seed -5"),
    Bad("negative", "train --config tiny --out {out} train.weight_decay=-0.1"),
    Bad("negative", "train --config tiny --out {out} data.limit=-1"),
    Bad("negative", "sample {run} --out {out} --seed -1"),
    Bad("negative", "sample {cvae} --out {out} --set Smiling=-1"),
    Bad("negative", "synth --out {out} --seed -1"),
    Bad("negative", "data info {data} --seed -2"),
    Bad("negative", "demo --out {out} --minutes -3"),
    Bad("negative", "explain {run} --out {out} --units -1"),
    Bad("negative", "evaluate {run} --out {out}.json --n -4"),
    Bad("negative", "app {run} --port -1"),
    Bad("negative", "app {run} --gallery -1"),
    # zero where it makes no sense
    Bad("zero", "sample {run} --out {out} --n 0"),
    Bad("zero", "reconstruct {run} --data {data} --out {out} --n 0"),
    Bad("zero", "explain {run} --out {out} --top 0"),
    Bad("zero", "traverse {run} --out {out} --n 0"),
    Bad("zero", "evaluate {run} --out {out}.json --max-map-images 0"),
    Bad("zero", "report {run} --out {out} --eval-n 0"),
    Bad("zero", "directions {run} --out {out} --k 0"),
    Bad("zero", "sweep --config tiny --out {out} --grid latent=4 --eval-n 0"),
    Bad("zero", "demo --out {out} --minutes 0"),
    Bad("zero", "app {run} --top 0"),
    Bad("zero", "train --config tiny --out {out} train.lr=0"),
    Bad("zero", "synth --out {out} --n 0"),
    # sizes that would not fit, or values past any use
    Bad("huge", "sample {run} --out {out} --n 100000000"),
    Bad("huge", "synth --out {out} --n 100000000"),
    Bad("huge", "explain {run} --out {out} --units 0-300000000"),
    Bad("huge", "traverse {run} --out {out} --units 0-300000000"),
    Bad("huge", "demo --out {out} --n 100000000"),
    Bad("huge", "train --config tiny --out {out} --seed 99999999999"),
    Bad("huge", "train --config tiny --out {out} train.max_minutes=1e12"),
    Bad("huge", "data info {data} --size 100000"),
    Bad("huge", "synth --out {out} --size 5000"),
    # outside a range: ports, units, fractions, attribute values
    Bad("range", "app {run} --port 70000"),
    Bad("range", "app {run} --port 65536"),
    Bad("range", "explain {run} --out {out} --units 5-2"),
    Bad("range", "explain {run} --out {out} --units 8"),
    Bad("range", "train --config tiny --out {out} train.ema_decay=1.5"),
    Bad("range", "train --config tiny --out {out} data.val_fraction=1.2"),
    Bad("range", "train --config tiny --out {out} train.epochs=-5"),
    Bad("range", "sample {cvae} --out {out} --set Smiling=2"),
    # a checkpoint whose weights hold NaN
    Bad("checkpoint", "sample {nan_ckpt} --out {out}"),
    Bad("checkpoint", "explain {nan_ckpt} --out {out}"),
    Bad("checkpoint", "evaluate {nan_ckpt} --out {out}.json"),
    Bad("checkpoint", "app {nan_ckpt}"),
    Bad("checkpoint", "train --config tiny --out {out} --resume {nan_ckpt}"),
    # more numbers: NaN, infinity, signs, zero, size and range of options not above
    Bad("nan", "train --config tiny --out {out} data.val_fraction=nan"),
    Bad("nan", "train --config tiny --out {out} train.ema_decay=nan"),
    Bad("nan", "explain {run} --out {out} --units nan"),
    Bad("inf", "train --config tiny --out {out} train.lr=1e400"),
    Bad("inf", "train --config tiny --out {out} --minutes 1e999"),
    Bad("inf", "traverse {run} --out {out} --deltas 1e999"),
    Bad("inf", "train --config tiny --out {out} model.image_size=inf"),
    Bad("negative", "train --config tiny --out {out} --max-steps -2"),
    Bad("negative", "sweep --config tiny --out {out} --grid latent=4 --eval-n -1"),
    Bad("negative", "data info synth --synth-n -5"),
    Bad("negative", "import --from diffusers {tmp}/no-model --out {out} --size -1"),
    Bad("negative", "app {run} --threads -2"),
    Bad("negative", "train --config tiny --out {out} train.beta=-1"),
    Bad("zero", "train --config tiny --out {out} --threads 0"),
    Bad("zero", "train --config tiny --out {out} --num-nodes 0"),
    Bad("zero", "evaluate {run} --out {out}.json --direction-images 0"),
    Bad("zero", "report {run} --out {out} --n 0"),
    Bad("zero", "explain {run} --out {out} --n 0"),
    Bad("zero", "app {run} --n 0"),
    Bad("huge", "train --config tiny --out {out} --threads 100000"),
    Bad("huge", "app {run} --threads 100000"),
    Bad("huge", "sample {run} --out {out} --seed 4294967296"),
    Bad("range", "directions {run} --out {out} --max-images 1"),
    Bad("range", "demo --out {out} --n 49"),
    Bad("range", "synth --out {out} --size 15"),
    Bad("range", "app {run} --port 0x50"),
    # not a number, or a float where an integer is meant
    Bad("not a number", "sample {run} --out {out} --n 1.5"),
    Bad("not a number", "synth --out {out} --n 4 --size 32.0"),
    Bad("not a number", "app {run} --port 1e3"),
    Bad("not a number", "train --config tiny --out {out} --size 64.0"),
    Bad("not a number", "train --config tiny --out {out} --seed 0x10"),
    Bad("not a number", "train --config tiny --out {out} train.max_steps=1.5"),
    Bad("not a number", "train --config tiny --out {out} train.seed=1e3"),
    Bad("not a number", "explain {run} --out {out} --units 1.5"),
    Bad("not a number", "traverse {run} --out {out} --units x-y"),
    Bad("not a number", "demo --out {out} --minutes ten"),
    Bad("not a number", "data info {data} --size 32.5"),
    Bad("not a number", "sample {cvae} --out {out} --set Smiling=0x1"),
    Bad("not a number", "sample {run} --out {out} --n=--"),  # argparse gave [] to the handler
    # config files: YAML that is broken, or is not a mapping of sections; bad overrides
    Bad("config file", "train --config {yaml_syntax} --out {out}"),
    Bad("config file", "train --config {yaml_duplicate} --out {out}"),
    Bad("config file", "train --config {yaml_python_object} --out {out}"),
    Bad("config file", "train --config {yaml_python_apply} --out {out}"),
    Bad("config file", "train --config {yaml_custom_tag} --out {out}"),
    Bad("config file", "train --config {yaml_set} --out {out}"),
    Bad("config file", "train --config {yaml_list} --out {out}"),
    Bad("config file", "train --config {yaml_scalar} --out {out}"),
    Bad("config file", "train --config {yaml_string} --out {out}"),
    Bad("config file", "train --config {yaml_tab} --out {out}"),
    Bad("config file", "train --config {yaml_two_documents} --out {out}"),
    Bad("config file", "train --config {yaml_latin1} --out {out}"),
    Bad("config file", "train --config {yaml_utf16_no_bom} --out {out}"),
    Bad("config file", "train --config {yaml_section_scalar} --out {out}"),
    Bad("config file", "train --config {yaml_unknown_section} --out {out}"),
    Bad("config file", "train --config {yaml_interpolation} --out {out}"),
    Bad("config file", "train --config {yaml_aliases} --out {out}"),
    Bad("config file", "train --config {yaml_int_key} --out {out}"),
    Bad("config file", "train --config tiny --config {yaml_duplicate} --out {out}"),
    Bad("config file", "train --config {tmp} --out {out}"),
    Bad("config file", "sweep --config {yaml_python_object} --out {out} --grid latent=4"),
    Bad("config file", "sweep --config {yaml_list} --out {out} --grid latent=4"),
    Bad("config file", "sweep --config {yaml_syntax} --out {out} --grid latent=4"),
    Bad("config file", "train --config tiny --out {out} train.lr=[1"),
    Bad("config file", "train --config tiny --out {out} train.lr=${{oops}}"),
    Bad("config file", "train --config tiny --out {out} model=5"),
    Bad("config file", "train --config tiny --out {out} train.lr={{a:1}}"),
    Bad("config file", "train --config tiny --out {out} =3"),
    # attribute and partition files: encodings, counts that do not match line 1
    Bad("attribute file", "data info {attr_latin1}"),
    Bad("attribute file", "data info {attr_utf16_no_bom}"),
    Bad("attribute file", "data info {attr_utf16_odd}"),
    Bad("attribute file", "data info {attr_count_more}"),
    Bad("attribute file", "data info {attr_count_less}"),
    Bad("attribute file", "data info {attr_count_word}"),
    Bad("attribute file", "data info {attr_binary}"),
    Bad("attribute file", "data info {attr_empty}"),
    Bad("attribute file", "data info {attr_header_39}"),
    Bad("attribute file", "data info {attr_value_nan}"),
    Bad("attribute file", "data info {attr_partition_latin1}"),
    Bad("attribute file", "data info {attr_hq_count}"),
    Bad("attribute file", "train --config tiny --out {out} --model cvae --data {attr_count_more}"),
    Bad("attribute file", "reconstruct {cvae} --data {attr_latin1} --out {out}"),
    Bad("attribute file", "directions {run} --data {attr_utf16_no_bom} --out {out}"),
    Bad("attribute file", "explain {cvae} --data {attr_count_less} --out {out}"),
    Bad("attribute file", "evaluate {run} --data {attr_binary} --out {out}.json"),
    # control characters in file names and values: still one line, shown escaped
    Bad("control characters", "data info {ctrl_celeba}"),
    Bad("control characters", "data info {ctrl_folder}"),
    Bad("control characters", "train --config {tmp}/bad{nl}name.yaml --out {out}"),
    Bad("control characters", "sample {tmp}/no{nl}such.ckpt --out {out}"),
    Bad("control characters", "evaluate {run} --out {tmp}/res{nl}ults"),
    Bad("control characters", "explain {run} --out {out} --layer enc{nl}oder"),
    Bad("control characters", "sample {cvae} --out {out} --set Smi{esc}ling=1"),
    Bad("control characters", "sample {run} --out {out} --n 1{nl}0"),
    Bad("control characters", "train --config tiny --out {out} model.kind=v{esc}ae"),
    Bad("control characters", "data info {tmp}/missing{bel}data"),
    Bad("control characters", "traverse {run} --out {out} --deltas 0.1,{esc}"),
    Bad("control characters", "app {run} --port 80{nl}80"),
    Bad("control characters", "report {tmp}/gone{nl}run"),
    Bad("control characters", "sweep --config tiny --out {out} --grid lat{nl}ent=4"),
    # symbolic links that lead nowhere (a loop, a missing target)
    Bad("symlink loop", "data info {loop_data}"),
    Bad("symlink loop", "data info {loop_root}"),
    Bad("symlink loop", "data info {dangling_data}"),
    Bad("symlink loop", "data info {loop_celeba}"),
    Bad("symlink loop", "train --config tiny --out {out} --data {loop_data}"),
    Bad("symlink loop", "reconstruct {run} --data {loop_data} --out {out}"),
    Bad("symlink loop", "explain {run} --data {loop_data} --out {out}"),
    Bad("symlink loop", "sample {loop_file} --out {out}"),
    Bad("symlink loop", "train --config {loop_file} --out {out}"),
    Bad("symlink loop", "sample {run} --out {loop_file}"),
    Bad("symlink loop", "data info {data} --cache-dir {loop_file}"),
    Bad("symlink loop", "directions {run} --vector {loop_file} --out {out}"),
    # files holding pickled objects where tensors are expected
    Bad("pickle", "sample {pickled_ckpt} --out {out}"),
    Bad("pickle", "explain {pickled_ckpt} --out {out}"),
    Bad("pickle", "evaluate {pickled_ckpt} --out {out}.json"),
    Bad("pickle", "report {pickled_ckpt} --out {out}"),
    Bad("pickle", "app {pickled_ckpt}"),
    Bad("pickle", "train --config tiny --out {out} --resume {pickled_ckpt}"),
    Bad("pickle", "traverse {pickled_ckpt} --out {out}"),
    Bad("pickle", "reconstruct {pickled_ckpt} --data {data} --out {out}"),
    Bad("pickle", "directions {pickled_ckpt} --out {out}"),
    Bad("pickle", "sample {plain_pickle} --out {out}"),
    Bad("pickle", "import --from python torch.nn:Identity --weights {pickled_weights} --out {out}"),
    Bad("pickle", "directions {run} --vector {object_npy} --out {out}"),
    Bad("pickle", "explain {run} --out {out} --directions {object_npy}"),
    Bad("pickle", "sample {run} --out {out} --z {pickled_ckpt}"),
    Bad("pickle", "app {run} --z {pickled_ckpt}"),
]

#: What the message of each case of issue 20.5's kinds must say (the file and the fix).
SAYS: dict[str, str] = {
    "train --config {yaml_syntax} --out {out}": "config file {yaml_syntax}, line 3, column 1:",
    "train --config {yaml_duplicate} --out {out}": "line 3, column 3: found duplicate key lr; keep one",
    "train --config {yaml_python_object} --out {out}": "tag !!python/object:os.system is not allowed",
    "train --config {yaml_python_apply} --out {out}": "!!python/object/apply:os.getcwd is not allowed",
    "train --config {yaml_custom_tag} --out {out}": "the YAML tag !fast is not allowed",
    "train --config {yaml_set} --out {out}": "config key 'train.lr' in {yaml_set}",
    "train --config {yaml_list} --out {out}": "{yaml_list} holds a list, not a mapping",
    "train --config {yaml_scalar} --out {out}": "{yaml_scalar} holds a single value, not a mapping",
    "train --config {yaml_string} --out {out}": "{yaml_string} holds a single value",
    "train --config {yaml_tab} --out {out}": "found character '\\t' that cannot start any token",
    "train --config {yaml_two_documents} --out {out}": "expected a single document in the stream",
    "train --config {yaml_latin1} --out {out}": "{yaml_latin1} is not UTF-8 text (byte 0xe9 on line 2",
    "train --config {yaml_utf16_no_bom} --out {out}": "holds NUL bytes (UTF-16 without a byte-order mark",
    "train --config {yaml_section_scalar} --out {out}": "section 'train' must be a mapping of keys, got 5",
    "train --config {yaml_unknown_section} --out {out}": "Key 'optim' not in 'RunConfig'",
    "train --config {yaml_interpolation} --out {out}": "Interpolation key 'oops' not found",
    "train --config {yaml_aliases} --out {out}": "too many YAML aliases (*name) expand; write the",
    "train --config {yaml_int_key} --out {out}": "Key '1' not in 'RunConfig'",
    "train --config tiny --config {yaml_duplicate} --out {out}": "{yaml_duplicate}, line 3",
    "train --config {tmp} --out {out}": "config file not found: {tmp}; give a YAML path",
    "sweep --config {yaml_python_object} --out {out} --grid latent=4": "!!python/object:os.system",
    "sweep --config {yaml_list} --out {out} --grid latent=4": "holds a list, not a mapping",
    "sweep --config {yaml_syntax} --out {out} --grid latent=4": "{yaml_syntax}, line 3, column 1",
    "train --config tiny --out {out} train.lr=[1": "override 'train.lr=[1' has a value that is not",
    "train --config tiny --out {out} train.lr=${{oops}}": "Interpolation key 'oops' not found",
    "train --config tiny --out {out} model=5": "config key 'model' in the command line must be a mapping of keys, got 5",
    "train --config tiny --out {out} train.lr={{a:1}}": "config key 'train.lr' in the command line",
    "train --config tiny --out {out} =3": "Key '' not in 'RunConfig'",
    "data info {attr_latin1}": "list_attr_celeba.txt is not UTF-8 text (byte 0xe9 on line 5",
    "data info {attr_utf16_no_bom}": "list_attr_celeba.txt holds NUL bytes",
    "data info {attr_utf16_odd}": "starts like UTF-16 (a byte-order mark) but is not UTF-16",
    "data info {attr_count_more}": "line 1 says 5 images but the file has 3 rows; download",
    "data info {attr_count_less}": "line 1 says 2 images but the file has 3 rows",
    "data info {attr_count_word}": "line 1 must be the number of images, found 'three'",
    "data info {attr_binary}": "is not UTF-8 text (byte 0x80 on line 2",
    "data info {attr_empty}": "list_attr_celeba.txt: attribute file too short",
    "data info {attr_header_39}": "line 2 has 39 attribute names, expected all 40",
    "data info {attr_value_nan}": "line 4 ('000002.png'): value 'nan' is not a number",
    "data info {attr_partition_latin1}": "list_eval_partition.txt is not UTF-8 text (byte 0xe9",
    "data info {attr_hq_count}": "CelebAMask-HQ-attribute-anno.txt: line 1 says 4 images",
    "train --config tiny --out {out} --model cvae --data {attr_count_more}": "line 1 says 5",
    "reconstruct {cvae} --data {attr_latin1} --out {out}": "is not UTF-8 text (byte 0xe9",
    "directions {run} --data {attr_utf16_no_bom} --out {out}": "holds NUL bytes",
    "explain {cvae} --data {attr_count_less} --out {out}": "line 1 says 2 images",
    "evaluate {run} --data {attr_binary} --out {out}.json": "is not UTF-8 text (byte 0x80",
    "data info {ctrl_celeba}": "img_align_celeba/ab\\ncd.png: has no row in the attribute file",
    "data info {ctrl_folder}": "{ctrl_folder}/bad\\x1b[31m.png: not a readable image",
    "train --config {tmp}/bad{nl}name.yaml --out {out}": "config file {tmp}/bad\\nname.yaml, line 3",
    "sample {tmp}/no{nl}such.ckpt --out {out}": "checkpoint not found: {tmp}/no\\nsuch.ckpt",
    "evaluate {run} --out {tmp}/res{nl}ults": "--out {tmp}/res\\nults is a folder",
    "explain {run} --out {out} --layer enc{nl}oder": "unknown layer",
    "sample {cvae} --out {out} --set Smi{esc}ling=1": "unknown attribute 'Smi\\x1b[31mling'",
    "sample {run} --out {out} --n 1{nl}0": "argument --n: must be an integer >= 1, got '1\\n0'",
    "train --config tiny --out {out} model.kind=v{esc}ae": "override 'model.kind=v\\x1b[31mae'",
    "data info {tmp}/missing{bel}data": "{tmp}/missing\\x07data does not exist",
    "traverse {run} --out {out} --deltas 0.1,{esc}": "'0.1,\\x1b[31m' is not a comma-separated",
    "app {run} --port 80{nl}80": "argument --port: must be a port from 1 to 65535",
    "report {tmp}/gone{nl}run": "checkpoint not found: {tmp}/gone\\nrun",
    "sweep --config tiny --out {out} --grid lat{nl}ent=4": "--grid axis 'lat\\nent' is unknown",
    "data info {loop_data}": "{loop_data}/loop.png: a symbolic link loop (it leads back to itself); fix or remove the link, or skip bad files",
    "data info {loop_root}": "{loop_root} is a symbolic link loop",
    "data info {dangling_data}": "gone.png: a symbolic link to a missing file (missing.png",
    "data info {loop_celeba}": "{loop_celeba}/img_align_celeba is a symbolic link loop",
    "train --config tiny --out {out} --data {loop_data}": "loop.png: a symbolic link loop",
    "reconstruct {run} --data {loop_data} --out {out}": "loop.png: a symbolic link loop",
    "explain {run} --data {loop_data} --out {out}": "loop.png: a symbolic link loop",
    "sample {loop_file} --out {out}": "checkpoint {loop_file} is a symbolic link loop",
    "train --config {loop_file} --out {out}": "config file {loop_file} is a symbolic link loop",
    "sample {run} --out {loop_file}": "--out {loop_file} is a symbolic link loop",
    "data info {data} --cache-dir {loop_file}": "{loop_file} is a symbolic link loop",
    "directions {run} --vector {loop_file} --out {out}": "{loop_file}",
    "sample {pickled_ckpt} --out {out}": "{pickled_ckpt} holds a pickled test_bad_input_sweep.Thing, not only tensors: latentcam loads tensors only",
    "explain {pickled_ckpt} --out {out}": "latentcam loads tensors only",
    "evaluate {pickled_ckpt} --out {out}.json": "latentcam loads tensors only",
    "report {pickled_ckpt} --out {out}": "latentcam loads tensors only",
    "app {pickled_ckpt}": "latentcam loads tensors only",
    "train --config tiny --out {out} --resume {pickled_ckpt}": "latentcam loads tensors only",
    "traverse {pickled_ckpt} --out {out}": "latentcam loads tensors only",
    "reconstruct {pickled_ckpt} --data {data} --out {out}": "latentcam loads tensors only",
    "directions {pickled_ckpt} --out {out}": "latentcam loads tensors only",
    "sample {plain_pickle} --out {out}": "{plain_pickle} is a Python pickle (or an old torch.save format), not a latentcam checkpoint: latentcam loads tensors only",
    "import --from python torch.nn:Identity --weights {pickled_weights} --out {out}": "{pickled_weights} holds a pickled test_bad_input_sweep.Thing, not only tensors: latentcam loads tensors only (unpickling an object can run any code); save the weights alone",
    "directions {run} --vector {object_npy} --out {out}": "{object_npy} holds a NumPy array of Python objects: latentcam loads tensors only",
    "explain {run} --out {out} --directions {object_npy}": "NumPy array of Python objects",
    "sample {run} --out {out} --z {pickled_ckpt}": "--z file {pickled_ckpt} is not a latent vector",
    "app {run} --z {pickled_ckpt}": "--z file {pickled_ckpt} is not a latent vector",
}

#: Config files of the "config file" cases, by placeholder (bytes as written).
BAD_YAML: dict[str, bytes] = {
    "yaml_syntax": b"train:\n  lr: [1, 2\n",
    "yaml_duplicate": b"train:\n  lr: 0.1\n  lr: 0.2\n",
    "yaml_python_object": b"train: !!python/object:os.system {}\n",
    "yaml_python_apply": b"train:\n  lr: !!python/object/apply:os.getcwd []\n",
    "yaml_custom_tag": b"train:\n  lr: !fast 3\n",
    "yaml_set": b"train:\n  lr: !!set {a, b}\n",
    "yaml_list": b"- train\n- model\n",
    "yaml_scalar": b"42\n",
    "yaml_string": b"'train: {lr: 2}'\n",
    "yaml_tab": b"train:\n\tlr: 1\n",
    "yaml_two_documents": b"train:\n  lr: 0.5\n---\nmodel: {}\n",
    "yaml_latin1": b"train:\n  recon_loss: mse # \xe9t\xe9\n",
    "yaml_utf16_no_bom": "train:\n  lr: 0.5\n".encode("utf-16-le"),
    "yaml_section_scalar": b"train: 5\n",
    "yaml_unknown_section": b"optim:\n  lr: 1\n",
    "yaml_interpolation": b"train:\n  lr: ${oops}\n",
    "yaml_aliases": (
        b"a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + b"".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n".encode()
            for i in range(6)
        )
    ),
    "yaml_int_key": b"1: 2\n",
}


#: The attribute file of a 3-image CelebA folder (``_celeba``), line by line.
ATTR_LINES = [
    "3",
    " ".join(ATTRIBUTE_NAMES),
    *(
        f"{i:06d}.png  " + " ".join("1" if (i + j) % 3 == 0 else "-1" for j in range(40))
        for i in (1, 2, 3)
    ),
]
GOOD_ATTRS = ("\n".join(ATTR_LINES) + "\n").encode()


def _lines(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


#: CelebA folders whose annotation files are damaged: placeholder -> (file, bytes written).
BAD_ATTRS: dict[str, tuple[str, bytes]] = {
    "attr_latin1": (
        "list_attr_celeba.txt",
        GOOD_ATTRS.replace(b"000003.png", "caf\xe9.png".encode("latin-1")),
    ),
    "attr_utf16_no_bom": ("list_attr_celeba.txt", GOOD_ATTRS.decode().encode("utf-16-le")),
    "attr_utf16_odd": (
        "list_attr_celeba.txt",
        b"\xff\xfe" + GOOD_ATTRS.decode().encode("utf-16-le")[:-1],
    ),
    "attr_count_more": ("list_attr_celeba.txt", _lines("5", *ATTR_LINES[1:])),
    "attr_count_less": ("list_attr_celeba.txt", _lines("2", *ATTR_LINES[1:])),
    "attr_count_word": ("list_attr_celeba.txt", _lines("three", *ATTR_LINES[1:])),
    "attr_binary": ("list_attr_celeba.txt", bytes(range(256))),
    "attr_empty": ("list_attr_celeba.txt", b""),
    "attr_header_39": (
        "list_attr_celeba.txt",
        _lines("3", " ".join(ATTRIBUTE_NAMES[:-1]), *ATTR_LINES[2:]),
    ),
    "attr_value_nan": (
        "list_attr_celeba.txt",
        _lines(*ATTR_LINES[:3], ATTR_LINES[3].replace(" -1", " nan", 1), *ATTR_LINES[4:]),
    ),
    "attr_partition_latin1": (
        "list_eval_partition.txt",
        b"000001.png 0\n000002.png 1\n000003.png 2 # r\xe9serv\xe9\n",
    ),
}


def _celeba(root: Path, files: dict[str, bytes], images: str = "img_align_celeba") -> Path:
    """A 3-image CelebA-style folder (32 px PNGs) holding ``files`` beside the images."""
    from PIL import Image

    (root / images).mkdir(parents=True)
    for i in (1, 2, 3):
        Image.new("RGB", (32, 32), (60 * i, 20, 90)).save(root / images / f"{i:06d}.png")
    for name, raw in files.items():
        (root / name).write_bytes(raw)
    return root


class Thing:
    """A class of this test module: pickling it needs code that a tensor file never holds."""


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (folders as "dir", symbolic
    links as their target, never followed: some lead nowhere)."""
    return {
        str(p.relative_to(root)): f"link {os.readlink(p)}"
        if p.is_symlink()
        else "dir"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def inputs(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The inputs of every case, in one folder (copies: the session's runs stay apart)."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("sweep")
    run = Path(shutil.copytree(runs["vae"], tmp / "run"))
    cvae = Path(shutil.copytree(runs["cvae"], tmp / "cvae"))
    data = tmp / "data"
    data.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (40 * i, 90, 200 - 40 * i)).save(data / f"img{i}.png")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name] = checkpoint["state_dict"][name] * float("nan")
    torch.save(checkpoint, tmp / "nan.ckpt")
    (tmp / "nan.yaml").write_text("train:\n  lr: .nan\n")
    paths = {
        "run": run,
        "cvae": cvae,
        "data": data,
        "nan_ckpt": tmp / "nan.ckpt",
        "nan_yaml": tmp / "nan.yaml",
        "tmp": tmp,
        "out": tmp / "out",
    }
    for key, raw in BAD_YAML.items():
        paths[key] = tmp / f"{key}.yaml"
        paths[key].write_bytes(raw)
    (tmp / "bad\nname.yaml").write_bytes(BAD_YAML["yaml_syntax"])
    (tmp / "res\nults").mkdir()
    for key, (file, raw) in BAD_ATTRS.items():
        paths[key] = _celeba(tmp / key, {"list_attr_celeba.txt": GOOD_ATTRS, file: raw})
        if key == "attr_latin1":  # the file names café.png in latin-1, the disk in UTF-8
            folder = paths[key] / "img_align_celeba"
            (folder / "000003.png").rename(folder / "café.png")
    paths["attr_hq_count"] = _celeba(
        tmp / "attr_hq_count",
        {"CelebAMask-HQ-attribute-anno.txt": _lines("4", *ATTR_LINES[1:])},
        images="CelebA-HQ-img",
    )
    # control characters in the name of an image without an attribute row, of a bad image
    paths["ctrl_celeba"] = _celeba(tmp / "ctrl_celeba", {"list_attr_celeba.txt": GOOD_ATTRS})
    Image.new("RGB", (32, 32)).save(paths["ctrl_celeba"] / "img_align_celeba" / "ab\ncd.png")
    paths["ctrl_folder"] = tmp / "ctrl_folder"
    shutil.copytree(data, paths["ctrl_folder"])
    (paths["ctrl_folder"] / "bad\x1b[31m.png").write_bytes(b"not a png")
    # symbolic links that lead nowhere
    paths["loop_data"] = Path(shutil.copytree(data, tmp / "loop_data"))
    (paths["loop_data"] / "loop.png").symlink_to("loop.png")
    paths["dangling_data"] = Path(shutil.copytree(data, tmp / "dangling_data"))
    (paths["dangling_data"] / "gone.png").symlink_to("missing.png")
    paths["loop_root"] = tmp / "loop_root"
    paths["loop_root"].symlink_to("loop_root")
    paths["loop_celeba"] = tmp / "loop_celeba"
    (paths["loop_celeba"] / "img_align_celeba").parent.mkdir()
    (paths["loop_celeba"] / "img_align_celeba").symlink_to("img_align_celeba")
    paths["loop_file"] = tmp / "loop.ckpt"
    paths["loop_file"].symlink_to("loop.ckpt")
    # pickled objects where tensors are expected
    checkpoint["state_dict"][name] = checkpoint["state_dict"][name].nan_to_num()
    checkpoint["extra"] = Thing()
    paths["pickled_ckpt"] = tmp / "pickled.ckpt"
    torch.save(checkpoint, paths["pickled_ckpt"])
    paths["pickled_weights"] = tmp / "weights.pt"
    torch.save({"weight": torch.zeros(2), "meta": Thing()}, paths["pickled_weights"])
    paths["plain_pickle"] = tmp / "plain.ckpt"
    paths["plain_pickle"].write_bytes(pickle.dumps({"state_dict": Thing()}))
    paths["object_npy"] = tmp / "vectors.npy"
    np.save(paths["object_npy"], np.array([Thing(), Thing()], dtype=object), allow_pickle=True)
    return paths


#: Control characters the "control characters" cases put inside a word.
CONTROL = {"nl": "\n", "esc": "\x1b[31m", "bel": "\x07"}


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def _record(case: Bad, line: str, inputs: dict[str, Path]) -> None:
    out = tally_file("bad_input_sweep", ".jsonl")
    if out is None:
        return
    for name, path in sorted(inputs.items(), key=lambda item: -len(str(item[1]))):
        line = line.replace(str(path), "{" + name + "}")
    with open(out, "a") as fh:
        fh.write(json.dumps({"kind": case.kind, "argv": case.argv, "message": line}) + "\n")


@pytest.mark.parametrize("case", SWEEP, ids=[f"{c.kind}:{c.argv}" for c in SWEEP])
def test_bad_input(
    case: Bad,
    inputs: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    _session_cache: Path,
) -> None:
    before = snapshot(inputs["tmp"])
    places = {**{k: str(v) for k, v in inputs.items()}, **CONTROL}
    argv = [w.format(**places) for w in case.argv.split()]
    if argv[0] in ("train", "sweep"):
        argv += ["--no-progress", f"data.cache_dir={_session_cache}", "data.synth_n=96"]
    assert run_cli(argv) == 2, argv
    captured = capsys.readouterr()
    lines = [s for s in captured.err.splitlines() if s.strip() and s[:5] != "INFO:"]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].isprintable(), lines[0]  # control characters come out escaped
    assert re.match(rf"latentcam {argv[0]}( info)?: error: ", lines[0]), lines[0]
    if case.argv in SAYS:
        says = SAYS[case.argv].format(**{k: str(v) for k, v in inputs.items()})
        assert says in lines[0], lines[0]
    assert captured.out == ""
    assert snapshot(inputs["tmp"]) == before  # inputs byte-identical, nothing new
    _record(case, lines[0], inputs)


def test_the_sweep_covers_every_command_and_kind() -> None:
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {c.argv.split()[0] for c in SWEEP} == commands
    tally: Counter[Any] = Counter(c.kind for c in SWEEP)
    assert set(tally) == set(KINDS) and len(SWEEP) >= 150
    assert len({c.argv for c in SWEEP}) == len(SWEEP)  # no case twice
    part5 = {"config file", "attribute file", "control characters", "symlink loop", "pickle"}
    assert {c.argv for c in SWEEP if c.kind in part5} == set(SAYS)  # each says what it must
