"""utils.training.trainer: the run around the Engine (training mode across evaluations, the log's opening lines)."""
import pretrain_cond
from tests.helpers import tiny_run


def test_every_step_trains_in_training_mode_even_after_an_evaluation_left_eval_mode(tmp_path, monkeypatch):
    """Training mode is set once an epoch (``Run.set_epoch``), not in every step: the epoch-end k-NN
    runs the backbone in eval mode, and the next epoch must train in training mode again."""
    import utils.training.step
    import utils.training.trainer as trainer
    from tests.data_formats import write_class_folders
    modes, real_knn, real_model_step = [], trainer.knn_monitor, utils.training.step.make_model_step

    def knn_then_eval(run):
        out = real_knn(run)
        run.model.eval()  # an evaluation that forgets to restore training mode
        return out

    def recording_model_step(run, total_steps, *guard):
        model_step = real_model_step(run, total_steps, *guard)

        def step(engine, inputs):
            modes.append(all(m.training for m in run.model.modules()))
            return model_step(engine, inputs)
        return step

    monkeypatch.setattr(trainer, "knn_monitor", knn_then_eval)
    monkeypatch.setattr(utils.training.step, "make_model_step", recording_model_step)
    root = write_class_folders(str(tmp_path / "jpegs"), ["a", "b"], per_class=4, size=(40, 36))
    pretrain_cond.main(["--logdir", str(tmp_path / "run"), "--dataset", "folder", "--datadir", root,
                        "--model", "mini_resnet", "--batch-size", "4", "--max-epochs", "2", "--eval-freq", "1",
                        "--num-workers", "0", "--proj-hidden", "32", "--aug-cond", "crop", "color", "--device", "cpu"])
    assert modes == [True] * 4


def test_opening_lines_say_what_trains_and_what_the_knn_monitor_compares(tmp_path):
    import dataclasses
    from utils.training.trainer import opening_lines
    run = tiny_run(tmp_path, "--aug-inj-type", "proj-none")
    head, method, inputs, knn = opening_lines(run, 44)
    assert inputs == ("input: uint8 images held on the CPU, views made there in batches, crop included; "
                      "augmentation eager per stage; backbone eager")
    assert head.startswith("simsiam on colordigits (1438 images), mini_resnet, ") and "44 steps/epoch" in head
    assert method == "projector without conditioning (--aug-inj-type proj-none)"
    assert knn == "k-NN monitor: 359 labelled queries against 1438 labelled images"
    run.data = dataclasses.replace(run.data, knn_train=None, knn_test=None)
    assert opening_lines(run, 44)[3] == "k-NN monitor off: the data has no labelled split"
    run.args.eval_freq = 0
    assert len(opening_lines(run, 44)) == 3


def test_method_line_names_the_conditioning_and_flags_that_change_nothing(tmp_path):
    from augmentations import config_for_dataset
    from utils.training.trainer import method_line
    run = tiny_run(tmp_path, "--aug-inj-type", "proj-none")
    a, small = run.args, config_for_dataset("colordigits")
    a.aug_cond, a.ss_crop, a.ss_color = ["color", "crop"], 0.5, 0.25
    assert method_line(a, small) == ("projector without conditioning (--aug-inj-type proj-none); --aug-cond color "
                                     "crop is not used; AugSelf heads: crop 0.5, color 0.25")
    a.ss_crop = a.ss_color = -1.0
    a.aug_inj_type, a.aug_treatment, a.aug_nn_depth, a.aug_nn_width = "proj-cat", "mlp", 6, 64
    a.aug_cond = ["blur", "color", "color_diff", "crop", "grayscale"]
    line = method_line(a, config_for_dataset("imagenet100"))
    assert line == ("CASSLE: the 13-d descriptor (blur color color_diff crop grayscale) through an MLP "
                    "(depth 6, width 64), proj-cat")
    never = "; its blur piece is always 0, as the --dataset colordigits recipe never blurs"
    assert method_line(a, small) == line + never
    a.aug_treatment, a.aug_cond = "hn", ["flip"]
    assert method_line(a, small) == ("CASSLE: the 1-d descriptor (flip) into a hypernetwork (depth 6, width 64) "
                                     "that makes the projector (mlp)")


def test_input_line_says_how_views_are_made(tmp_path):
    from utils.training.trainer import input_line
    a = tiny_run(tmp_path, "--aug-inj-type", "proj-none").args
    a.compile_augment, a.augment_graph, a.augment_ahead = True, "view", 8
    a.compile, a.compile_mode, a.channels_last = True, "reduce-overhead", True
    assert input_line(a, True, "cuda") == (
        "input: uint8 images held on the GPU, views made there in batches, crop included; augmentation compiled "
        "as one graph per view, 8 steps at once; backbone compiled (reduce-overhead), channels_last")
    a.num_workers, a.jpeg_decode = 4, "device"
    assert input_line(a, False, "cuda").startswith(
        "input: JPEG bytes and crop boxes from 4 loader workers, nvJPEG decode and crops in batches on the GPU, "
        "the rest of the views there; augmentation compiled")
    a.jpeg_decode, a.compile, a.channels_last = "workers", False, False
    assert input_line(a, False, "cuda").startswith(
        "input: JPEG decode (libjpeg-turbo; PIL for other files) and crops in 4 loader workers, the rest of the views "
        "on the GPU; ")
    assert input_line(a, False, "cuda").endswith("; backbone eager")
