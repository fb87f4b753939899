"""A dataset's class folders matched to a network's outputs by name: ImageNet WordNet IDs or
category names against 1000 outputs, a list of output names against a folder holding some of them,
one message for folders that match nothing."""
from __future__ import annotations

import pytest

from featviz.errors import FeatvizError
from featviz.model.class_match import imagenet_categories, imagenet_wnids, match_classes, output_names

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_the_shipped_wordnet_ids_are_imagenets_1000_in_output_order():
    wnids = imagenet_wnids()
    assert len(wnids) == len(set(wnids)) == 1000 and wnids == sorted(wnids)
    assert wnids[0] == "n01440764" and imagenet_categories()[0] == "tench"
    assert wnids[1] == "n01443537" and imagenet_categories()[1] == "goldfish"


def test_a_few_wordnet_id_folders_against_1000_outputs():
    folders = ["n01443537", "n02085620", "n07753592"]  # goldfish, Chihuahua, banana (sorted, as folders are)
    names, source = output_names("auto", 1000, folders)
    assert source == "imagenet" and len(names) == 1000
    assert [names[i] for i in match_classes(folders, names, source)] == ["goldfish", "Chihuahua", "banana"]


def test_imagenet_class_name_folders_loosely_written():
    folders = ["golden_retriever", "Goldfish", "great-white-shark"]
    names, source = output_names("auto", 1000, folders)
    assert source == "imagenet"
    assert [names[i] for i in match_classes(folders, names, source)] == ["golden retriever", "goldfish", "great white shark"]


def test_a_list_of_output_names_for_a_folder_with_8_of_10_classes():
    folders = ["airplane", "automobile", "cat", "dog", "frog", "horse", "ship", "truck"]
    names, source = output_names(CIFAR10, 10, folders)
    assert source == "config" and names == CIFAR10
    assert match_classes(folders, names, source) == [0, 1, 3, 5, 6, 7, 8, 9]


def test_one_output_per_class_stays_the_default():
    names, source = output_names("auto", 3, ["a", "b", "c"])
    assert (names, source) == (["a", "b", "c"], "dataset")
    assert match_classes(["a", "b", "c"], names, source) == [0, 1, 2]


def test_mismatches_are_one_message_each():
    with pytest.raises(FeatvizError, match=r"model.class_names: the network has 10 outputs and the dataset 8 classes"):
        output_names("auto", 10, CIFAR10[:8])
    with pytest.raises(FeatvizError, match="lists 9 names but the network has 10 outputs"):
        output_names(CIFAR10[:9], 10, CIFAR10[:8])
    with pytest.raises(FeatvizError, match="'cat' is listed more than once"):
        output_names(CIFAR10[:9] + ["cat"], 10, CIFAR10[:8])
    with pytest.raises(FeatvizError, match="imagenet needs a network with 1000 outputs; this one has 10"):
        output_names("imagenet", 10, CIFAR10)
    with pytest.raises(FeatvizError, match=r"2 of the dataset's 3 class folders match no output .*'aeroplane' \(closest: airplane\)"):
        match_classes(["aeroplane", "cat", "kitty"], CIFAR10, "config")
    with pytest.raises(FeatvizError, match="class folders 'Cat' and 'cat' both match the output 'cat'"):
        match_classes(["Cat", "cat"], CIFAR10, "config")
