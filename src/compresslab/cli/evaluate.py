"""``compresslab evaluate | export | compress | decompress``: a checkpoint against images and files."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

# Evaluation sets LIC papers report on, as folders under the data root (anchors: <name>/vtm, ... where shipped).
EVAL_SETS = {
    "kodak": "24 PNGs, kodim01.png ... kodim24.png; `compresslab fetch kodak`",
    "clic2020-professional": "the CLIC 2020 professional valid (41) or test (250) images, https://www.compression.cc/",
    "clic2020-mobile": "the CLIC 2020 mobile valid (61) or test (178) images, https://www.compression.cc/",
    "tecnick": "the 100 RGB 1200x1200 images of the Tecnick SAMPLING set, https://sourceforge.net/projects/testimages/",
}



def _model_override(args) -> dict | None:
    if not getattr(args, "model", None):
        return None
    cfg = {"name": args.model}
    if args.N:
        cfg["N"] = args.N
    if args.M:
        cfg["M"] = args.M
    return cfg


def check_inputs(*paths: tuple[str, str]) -> None:
    """Each (path, what) is a regular file (a checkpoint may also be a zoo: spec), else one line, before any command
    imports torch: a typo costs a fraction of a second, not the seconds the model stack takes to load."""
    from compresslab.io.inputs import check_regular_file

    for path, what in paths:
        if not (what == "checkpoint" and str(path).startswith("zoo:")):
            check_regular_file(path, what)


def cmd_evaluate(args) -> int:
    from compresslab.data.root import resolve_data_root

    if args.out:  # first: results that cannot be written after 24 images are coded are lost results
        check_output_file(args.out, "--out")
    check_inputs((args.ckpt, "checkpoint"))
    for flag in ("workers", "threads"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ValueError(f"--{flag} {getattr(args, flag)}: give 1 or more (leave it out for the default)")
    images = args.images or str(resolve_data_root(args.data_root) / args.data)
    if not args.images and not Path(images).is_dir():
        raise FileNotFoundError(f"evaluation set {args.data!r} not found at {images}: expected its images in "
                                f"<data root>/{args.data}/ ({EVAL_SETS[args.data]}); pass --data-root or --images")
    if args.images and not Path(images).exists():
        raise FileNotFoundError(f"--images {images} does not exist: pass a folder of images or one image file")
    import torch

    from compresslab.evaluation.evaluator import default_workers, list_eval_images
    from compresslab.evaluation.lof_config import LOFConfig
    from compresslab.evaluation.results import evaluate_checkpoint

    torch.set_num_threads(args.threads) if args.threads else None
    # images at once, in worker processes with one core each (evaluator.evaluate_model); --threads alone keeps one
    # image over N threads
    workers = args.workers or (1 if args.threads else default_workers())
    files = list_eval_images(images, args.max_images)
    lof = LOFConfig(steps=args.lof_steps, patience=args.lof_patience, lr=args.lof_lr, lr_end=args.lof_lr_end,
                    optimize_z=not args.lof_fixed_z) if args.lof else None
    rd = evaluate_checkpoint(args.ckpt, files, crop=args.crop, lof=lof, lmbda=args.lmbda,
                             dataset=None if args.images else args.data, image_source=str(images),
                             model_override=_model_override(args), progress=True, workers=workers)
    if args.lof and args.wandb:
        _log_lof_curves(rd.per_image, args)
    lambdas = rd.meta.extra.get("lambdas") if len(rd.results["bpp"]) > 1 else None
    for k in range(len(rd.results["bpp"])):  # a variable-rate model: one line per rate point
        m = {key: v[k] for key, v in rd.results.items()}
        at = f"rate point {k} (lambda {lambdas[k]:g}): " if lambdas else ""
        print(f"{at}mean over {len(files)} images: bpp {m['bpp']:.4f} | PSNR {m['psnr-rgb']:.3f} dB | MS-SSIM "
              f"{m['ms-ssim-rgb']:.4f} | real/est bpp {m['bpp_ratio']:.4f} | enc {m['encoding_time']:.3f}s "
              f"dec {m['decoding_time']:.3f}s")
    if args.out:
        rd.write(args.out)
        print(f"wrote {args.out}")
    return 0


def check_output_file(path: str, flag: str) -> None:
    from compresslab.io.atomic import probe_writable

    try:
        probe_writable(Path(path).parent)
    except OSError as e:
        raise ValueError(f"{flag} {path}: its folder cannot be written ({e.strerror or e}); choose another path") from None


def _log_lof_curves(rows, args) -> None:
    import wandb

    from compresslab.wandb_mode import wandb_mode

    wandb_mode()
    run = wandb.init(project="compresslab", job_type="lof", name=f"lof-{Path(args.ckpt).stem}",
                     dir=str(Path(args.out).parent if args.out else "."))
    run.log({"lof/cost": wandb.plot.line_series(
        xs=[list(range(len(r["lof_curve"]))) for r in rows], ys=[r["lof_curve"] for r in rows],
        keys=[r["name"] for r in rows], title="LOF: true RD cost per iteration", xname="iteration")})
    run.finish()


def cmd_export(args) -> int:
    check_inputs((args.ckpt, "checkpoint"))
    from compresslab.models.export import export_weights

    out, how = export_weights(args.ckpt, args.out, fmt=args.format, force=args.force, model_name=args.model)
    print(f"wrote {out}: {how}")
    return 0


def cmd_compress(args) -> int:
    check_inputs((args.ckpt, "checkpoint"), (args.image, "image"))
    from compresslab.bitstream.codec import compress_file

    lof = None
    if args.lof:
        from compresslab.evaluation.lof_config import LOFConfig

        lof = LOFConfig(steps=args.lof_steps)
    with one_line_warnings():
        info = compress_file(args.ckpt, args.image, args.output, lof=lof, lmbda=args.lmbda,
                             max_pixels=args.max_pixels, rate_point=args.rate_point, device=args.device)
    at = f", rate point {info['rate_point']}" if info.get("rate_point") is not None else ""
    print(f"wrote {args.output}: {info['bytes']} bytes ({info['bpp']:.4f} bpp incl. header{at})")
    return 0


def cmd_decompress(args) -> int:
    check_inputs((args.file, "compressed file"), (args.ckpt, "checkpoint"))
    if args.tile < 0:
        raise ValueError(f"--tile {args.tile}: a tile side in latent units is >= 0 (0: the whole image at once)")
    from compresslab.bitstream.codec import decompress_file

    with one_line_warnings():
        decompress_file(args.file, args.ckpt, args.output, isolate=not args.in_process, timeout=args.timeout,
                        memory_mb=args.memory_mb, max_pixels=args.max_pixels, tile=args.tile, device=args.device)
    print(f"wrote {args.output}")
    return 0


@contextlib.contextmanager
def one_line_warnings():
    """The codec's warnings (an image above Pillow's 89 MP) as one 'warning: ...' line each on stderr."""
    import warnings

    with warnings.catch_warnings():
        warnings.showwarning = lambda msg, *a, **k: print(f"warning: {msg}", file=sys.stderr)
        yield


def add_commands(sub) -> None:
    evaluate_p = sub.add_parser("evaluate", help="real-bitstream evaluation of a checkpoint (Kodak by default)")
    evaluate_p.add_argument("ckpt")
    evaluate_p.add_argument("--images", help="folder or file (default: <data root>/kodak)")
    evaluate_p.add_argument("--data", choices=sorted(EVAL_SETS), default="kodak",
                            help="evaluation set: <data root>/<name>/ (anchors exist for kodak and clic2020-*)")
    evaluate_p.add_argument("--data-root", default=None)
    evaluate_p.add_argument("--out", help="write CompressAI-format JSON here")
    evaluate_p.add_argument("--max-images", type=int)
    evaluate_p.add_argument("--crop", type=int, help="centre-crop each image (quick runs)")
    evaluate_p.add_argument("--threads", type=int, help="torch threads per image (with --workers 1)")
    evaluate_p.add_argument("--workers", type=int, help="images evaluated at once, in worker processes with one core "
                                                        "each (default: the cores this process may use, at most 8; 1 "
                                                        "with --threads or --lof); progress and ETA on stderr")
    evaluate_p.add_argument("--lof", action="store_true", help="latent overfitting at encode time (decoder unchanged)")
    from compresslab.evaluation.lof_config import LOFConfig  # torch-free: building the parser imports no torch

    lof_defaults = LOFConfig()  # one definition of LOF's defaults (conf/train.yaml's lof block mirrors it, tested)
    evaluate_p.add_argument("--lof-steps", type=int, default=lof_defaults.steps)
    evaluate_p.add_argument("--lof-patience", type=int, default=lof_defaults.patience)
    evaluate_p.add_argument("--lof-lr", type=float, default=lof_defaults.lr)
    evaluate_p.add_argument("--lof-lr-end", type=float, default=lof_defaults.lr_end)
    evaluate_p.add_argument("--lof-fixed-z", action="store_true", help="hyperprior models: optimise y only")
    evaluate_p.add_argument("--lmbda", type=float, help="lambda for LOF when the checkpoint does not record it")
    evaluate_p.add_argument("--wandb", action="store_true", help="log LOF cost curves to W&B (offline unless configured)")
    evaluate_p.add_argument("--model", help="model name for plain state dicts (e.g. factorized)")
    evaluate_p.add_argument("--N", type=int)
    evaluate_p.add_argument("--M", type=int)
    evaluate_p.set_defaults(func=cmd_evaluate)

    export_p = sub.add_parser(
        "export", help="write a model's weights for other tools: CompressAI's state dict for models it has "
                       "(factorized, hyperprior; its eval_model loads it), else a file that says which model it is "
                       "(compresslab evaluate takes it with no flags)",
        description="Never writes over its input; an existing output only with --force.")
    export_p.add_argument("ckpt", help="a training checkpoint, an exported file, a zoo: spec, or a plain state dict "
                                       "(with --model)")
    export_p.add_argument("out", help="the file to write")
    export_p.add_argument("--format", choices=("compressai", "compresslab"), default=None,
                          help="compressai: exactly what CompressAI's from_state_dict/eval_model load (models with a "
                               "CompressAI class; their default); compresslab: weights + a header naming model, "
                               "profile and sizes (the default for the others)")
    export_p.add_argument("--force", action="store_true", help="replace an existing output file (never the input)")
    export_p.add_argument("--model", help="the model a plain state dict holds (e.g. factorized); sizes are read "
                                          "from its weights")
    export_p.set_defaults(func=cmd_export)


    from compresslab.evaluation.lof_config import LOFConfig

    lof_defaults = LOFConfig()
    from compresslab.bitstream.limits import decode_defaults  # torch-free

    limits = decode_defaults()
    compress_p = sub.add_parser("compress", help="image -> .clab file")
    compress_p.add_argument("ckpt")
    compress_p.add_argument("image")
    compress_p.add_argument("-o", "--output", required=True)
    compress_p.add_argument("--lof", action="store_true", help="overfit the latent first (same decoder)")
    compress_p.add_argument("--lof-steps", type=int, default=lof_defaults.steps)
    compress_p.add_argument("--lmbda", type=float)
    compress_p.add_argument("--rate-point", type=int, help="a variable-rate model's rate point k (the k-th of its "
                            "model.lambdas; default: the checkpoint's lambda); the file records it")
    compress_p.add_argument("--max-pixels", type=int, default=limits["max_pixels"],
                            help="refuse larger images from their header, before decoding them (default "
                                 f"{limits['max_pixels']}, Pillow's decompression-bomb limit; conf/decode.yaml)")
    compress_p.add_argument("--device", default="cpu", help="where to encode: cpu (default), cuda, cuda:<k>")
    compress_p.set_defaults(func=cmd_compress)

    decompress_p = sub.add_parser("decompress", help=".clab file -> PNG")
    decompress_p.add_argument("file")
    decompress_p.add_argument("--ckpt", required=True, help="the checkpoint that encoded the file")
    decompress_p.add_argument("-o", "--output", required=True)
    decompress_p.add_argument("--in-process", action="store_true",
                   help="decode in this process (only for files you wrote yourself: a crafted payload can crash "
                        "CompressAI's C++ entropy decoder); default: an isolated child process")
    decompress_p.add_argument("--timeout", type=float, default=600.0, help="seconds before an isolated decode is abandoned")
    decompress_p.add_argument("--memory-mb", type=int, default=limits["memory_mb"],
                              help="refuse files whose decode is estimated (from the header) to need more; also the "
                                   "isolated decoder's address-space limit (a lower `ulimit -v` is kept; default "
                                   f"{limits['memory_mb']}, conf/decode.yaml)")
    decompress_p.add_argument("--max-pixels", type=int, default=limits["max_pixels"],
                              help=f"refuse files whose header declares a larger image (default {limits['max_pixels']}, "
                                   f"Pillow's decompression-bomb limit; a warning above {limits['warn_pixels']})")
    decompress_p.add_argument("--tile", type=int, default=limits["tile"],
                              help="run the synthesis transform on tiles this many latent units square (the pixels "
                                   "are the same; memory follows the tile); 0: the whole image at once (default "
                                   f"{limits['tile']}, conf/decode.yaml)")
    decompress_p.add_argument("--device", default="cpu", help="where to entropy-decode: cpu (default), cuda, cuda:<k> "
                              "(the synthesis transform runs on the CPU: the same pixels everywhere)")
    decompress_p.set_defaults(func=cmd_decompress)
