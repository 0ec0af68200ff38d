"""Item text from the configured .item fields: 'field: value; ...', empty fields dropped, names readable."""

from __future__ import annotations

from pathlib import Path

import pytest

from recbole_trsr.config import TRSRConfig
from recbole_trsr.item_text import ItemTexts, readable_sequence
from recbole_trsr.registry import get_model_class
from tests.conftest import SHARED_DATA, TINY_TEXT_FIELDS, write_tiny_dataset


@pytest.fixture
def tiny_item_file(tmp_path) -> Path:
    return write_tiny_dataset(tmp_path) / "tiny.item"


def test_fields_render_in_configured_order(tiny_item_file):
    texts = ItemTexts(tiny_item_file, TINY_TEXT_FIELDS)
    text = texts.text("i1")
    assert text.startswith("title: Product 1 deluxe; categories: Beauty, ")
    assert text.endswith("; brand: Brand1; price: 1.99")
    assert "'" not in text.split("categories: ")[1].split(";")[0].replace("Women's", "")


def test_empty_fields_are_dropped_and_the_item_still_renders(tiny_item_file):
    texts = ItemTexts(tiny_item_file, TINY_TEXT_FIELDS)
    # i3: no title, no price; i0: no brand, no price
    assert texts.text("i3").startswith("categories: Beauty, ")
    assert "title" not in texts.text("i3") and "price" not in texts.text("i3")
    assert "brand" not in texts.text("i0") and texts.text("i0").startswith("title: Product 0 deluxe")


def test_item_with_no_text_renders_empty(tmp_path):
    item_file = tmp_path / "x.item"
    item_file.write_text("item_id:token\ttitle:token\tbrand:token\nA\t\t\nB\tBlue pen\t\n")
    texts = ItemTexts(item_file, ["title", "brand"])
    assert texts.text("A") == ""
    assert texts.text("B") == "title: Blue pen"
    assert texts.text("not-listed") == ""


def test_form_feeds_line_separators_and_long_values_are_text(tmp_path):
    """Only \\n and \\r end a line, as in pandas and RecBole; csv's 131,072-character field limit is lifted."""
    from recbole_trsr.atomic_files import check_atomic_file

    long_title = "very long description " * 10_000
    item_file = tmp_path / "x.item"
    item_file.write_text(
        f"item_id:token\ttitle:token\nA\tpage\x0cbreak\nB\tline\u2028separator\nC\t{long_title}\nD\tlast\n",
        encoding="utf-8",
    )
    check_atomic_file(str(item_file), "\t", ["title"], exact=True)
    texts = ItemTexts(item_file, ["title"])
    assert texts.text("A") == "title: page break" and texts.text("B") == "title: line separator"  # prose: one space
    assert texts.text("C") == f"title: {long_title.strip()}" and texts.text("D") == "title: last"


def test_quoted_category_names_read_as_names():
    assert readable_sequence("'Beauty', \"Women's\", 'Eau de Parfum'") == "Beauty, Women's, Eau de Parfum"
    assert readable_sequence("Animation Children's Comedy") == "Animation Children's Comedy"


def test_text_fields_come_from_the_dataset_config(tmp_path):
    config = TRSRConfig(get_model_class("SASRec"), "ml-100k")
    texts = ItemTexts.from_config(config)
    assert texts.text("1") == "movie_title: Toy Story; release_year: 1995; class: Animation Children's Comedy"


def test_item_text_is_read_in_the_files_encoding(tmp_path):
    # The file checks read --encoding, the item texts read UTF-8: a latin-1 .item passed, then failed to decode.
    folder = write_tiny_dataset(tmp_path / "data")
    for path in (folder / "tiny.inter", folder / "tiny.item"):
        path.write_bytes(
            path.read_text(encoding="utf-8").replace("Product 1 deluxe", "Produit 1 délicat").encode("latin-1")
        )
    overrides = {"data_path": str(tmp_path / "data"), "encoding": "latin-1", "item_text_fields": str(TINY_TEXT_FIELDS)}
    config = TRSRConfig(get_model_class("SASRec"), "tiny", overrides=overrides)
    assert ItemTexts.from_config(config).text("i1").startswith("title: Produit 1 délicat; ")


@pytest.mark.integration
@pytest.mark.skipif(not (SHARED_DATA / "amazon").is_dir(), reason="../shared/data/amazon is not there")
def test_real_amazon_items_all_render():
    config = TRSRConfig(get_model_class("SASRec"), "amazon", overrides={"data_path": str(SHARED_DATA)})
    texts = ItemTexts.from_config(config)
    assert len(texts) == 12101
    assert texts.text("7806397051") == (
        "title: WAWO 15 Color Professionl Makeup Eyeshadow Camouflage Facial Concealer Neutral Palette; "
        "categories: Beauty, Makeup, Face, Concealers & Neutralizers; brand: COKA; price: 5.04"
    )
    # One of the 7 items without a title still renders from its other fields.
    assert texts.text("B000GZES7A") == "categories: Beauty, Skin Care, Eyes, Creams"


def test_html_entities_read_as_characters(tmp_path):
    item_file = tmp_path / "x.item"
    item_file.write_text("item_id:token\tbrand:token\nA\tDr. Scholl&#39;s &amp; Co\n")
    assert ItemTexts(item_file, ["brand"]).text("A") == "brand: Dr. Scholl's & Co"
