"""Fine-tune and evaluate detectron2's R50-C4 from a converted checkpoint (see detection/README.md).

    python detection/train_net.py --config-file detection/configs/voc_R50_C4_24k.yaml --num-gpus 8 \\
      MODEL.WEIGHTS ckpt-last.pkl OUTPUT_DIR out/voc

detectron2's own command line (default_argument_parser): --eval-only, --resume, --num-gpus,
--num-machines, and KEY VALUE overrides of the config. Needs detectron2 installed; it adds to it the
ROI head the configs name (a norm after res5) and the VOC / COCO evaluators.
"""
from __future__ import annotations

import os

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import (
    DefaultTrainer,
    default_argument_parser,
    default_setup,
    launch,
)
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.layers import get_norm
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """The C4 box head with a normalisation layer after its res5 stage: the backbone was pretrained
    with batch norm throughout, and the MoCo recipe normalises res5's output before the predictor."""

    @classmethod
    def _build_res5_block(cls, cfg):
        stage, channels = super()._build_res5_block(cfg)
        stage.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, channels))
        return stage, channels


class Trainer(DefaultTrainer):
    """DefaultTrainer with the evaluator each test set needs."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if "coco" in dataset_name:
            return COCOEvaluator(dataset_name, output_dir=output_folder or os.path.join(cfg.OUTPUT_DIR, "inference"))
        if "voc" in dataset_name:
            return PascalVOCDetectionEvaluator(dataset_name)
        raise ValueError(f"DATASETS.TEST {dataset_name}: no evaluator for it (expected a coco_* or voc_* dataset)")


def setup(args):
    """The config file with the command line's overrides, frozen; detectron2's logging and output folder."""
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
