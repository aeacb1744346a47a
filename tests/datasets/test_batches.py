"""Every pretraining batch source answers to one protocol; only the device-decode one reports where it decoded."""
import torch

from datasets import TensorImages, worker_crop_loader
from datasets.batches import BatchSource, DecodeCounts
from datasets.device_decode import DeviceDecodePrefetcher, bytes_loader
from datasets.folders import image_folder
from datasets.loaders import DeviceBatches, DevicePrefetcher
from tests.data_formats import write_jpeg
from utils.training.trainer import decode_report


def test_every_batch_source_is_one_and_only_device_decode_reports_counts(tmp_path):
    for i in range(4):
        write_jpeg(str(tmp_path / "c" / f"{i}.jpg"), (30, 24), i)
    ds, cpu = image_folder(str(tmp_path)), torch.device("cpu")
    in_memory = DeviceBatches(TensorImages(torch.zeros(4, 3, 4, 4, dtype=torch.uint8), torch.arange(4)), 2, 0, cpu)
    workers = DevicePrefetcher(worker_crop_loader(ds, 8, batch_size=2, seed=0, num_workers=0), cpu)
    on_device = DeviceDecodePrefetcher(bytes_loader(ds.samples, 2, seed=0, num_workers=0, size=8), cpu, threads=1)
    for source in (in_memory, workers, on_device):
        assert isinstance(source, BatchSource), type(source).__name__
    assert decode_report(in_memory) is None and decode_report(workers) is None
    assert on_device.decode_counts() == DecodeCounts(0, 0, (), "cpu")
    assert len(list(on_device)) == 2
    assert on_device.decode_counts() == DecodeCounts(4, 0, (), "cpu")
    assert decode_report(on_device) == ("decoded 4 images on the CPU and 0 in the loader workers (files nvJPEG "
                                        "may not handle), in this process")
    assert not isinstance(object(), BatchSource)
