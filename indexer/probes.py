"""The built-in probe set the exporter checks INT8 parity on.

Three kinds of text the encoder sees in production: short shopping queries,
product titles, and product descriptions. Written by hand to cover casing,
punctuation, numbers, units, non-Latin scripts and long texts.
"""

from __future__ import annotations

QUERIES = (
    "red running shoes",
    "t-shirt",
    "mens black leather wallet",
    "womens kurta with palazzo",
    "blue denim jacket for women",
    "analog watch steel strap",
    "sports bra",
    "kids school bag",
    "5'x8' area rug",
    "3.5 inch heels",
    "wireless earbuds under 2000",
    "cotton legging",
    "silk saree for wedding",
    "formal shirt slim fit",
    "gold plated earrings",
    "sunglasses aviator",
    "flip flops",
    "winter jacket hooded",
    "perfume for men",
    "lipstick matte red",
    "baby girl frock",
    "track pants",
    "handbag tan",
    "casual watches",
    "nightdress off white",
    "running shoes nike",
    "sneakers",
    "socks pack of 3",
    "belt",
    "chaussures de course rouges",
    "Laufschuhe für Damen",
    "कुर्ता पुरुषों के लिए",
    "赤いランニングシューズ",
    "summer dress 👗",
    "",
)

TITLES = (
    "Nike Men Blue T20 Indian Cricket Jersey",
    "Puma Women Black Running Shoes",
    "Fastrack Men Analog Black Dial Watch 3089SL01",
    "Jealous 21 Women Purple Shirt",
    "Turtle Check Men Navy Blue Shirt",
    "Titan Women Silver Watch",
    "Peter England Men Party Blue Jeans",
    "Adidas Men Black Track Pants",
    "Lakme Absolute Matte Lip Color 4.5 ml",
    "Baggit Women Tan Handbag",
    "Lotto Men Grey Sneakers",
    "Biba Women Printed Kurta with Palazzos",
    "Gini and Jony Girls Pink Frock",
    "Ray-Ban Unisex Aviator Sunglasses RB3025",
    "Wildcraft Unisex Red Backpack 35L",
    "Inkfruit Men's Chain Reaction T-shirt",
    "Skagen Men Brown Leather Wallet",
    "Reebok Women's Sports Bra",
    "Jockey Men Pack of 3 Socks",
    "Davidoff Cool Water Men Eau de Toilette 125 ml",
)

DESCRIPTIONS = (
    "Blue round neck Sahara Team India jersey, has short sleeves, print on the chest and "
    "back chest. Warranty for manufacturing defects: 6 months (not valid on products with "
    "more than 20% discount).",
    "Style note: Cheer for the Indian cricket team on and off the fields in this blue polo "
    "neck jersey. The Dri-Fit fabric wicks sweat away from the skin, while the mesh panels "
    "on the back keep you well ventilated. Team this with tracks or jeans.",
    "A pair of black running shoes, has regular styling, lace-up detail. Mesh upper, "
    "cushioned footbed, textured and patterned outsole. 100% synthetic. Wipe with a clean, "
    "dry cloth when needed.",
    "Analog watch with a round stainless steel case, black dial, luminous hands and a "
    "silver-toned stainless steel strap with a fold-over clasp. Water resistant up to 30 m. "
    "Comes with a 2-year warranty.",
    "Purple woven shirt with a spread collar, long sleeves with roll-up tabs, a full button "
    "placket, a patch pocket and a curved hem. Material: 100% cotton. Machine wash cold.",
    "Tan handbag with a zip closure; one main compartment, one inner zip pocket and two "
    "inner slip pockets; two handles and a detachable sling strap. Faux leather.",
    "Printed kurta with palazzos: the kurta has a mandarin collar, three-quarter sleeves, "
    "straight hem and side slits; the palazzos have an elasticated waistband. Fabric: rayon.",
    "Matte lip colour with a creamy texture that glides on smoothly and stays put for hours. "
    "Enriched with vitamin E. Shade: 204 Red Rush. Net quantity 4.5 ml.",
    "Unisex aviator sunglasses with a metal frame, green G-15 glass lenses offering 100% UV "
    "protection, adjustable nose pads and a branded case. " * 3,
    "Red backpack with a padded laptop sleeve that fits up to 15.6 inch laptops, two main "
    "compartments, a front zip pocket, side mesh pockets, padded shoulder straps, a chest "
    "strap and a rain cover. Capacity 35 litres. " * 6,
)


def probe_texts() -> list[tuple[str, str]]:
    """(kind, text) pairs: kind is "query", "title" or "description"."""
    return (
        [("query", t) for t in QUERIES]
        + [("title", t) for t in TITLES]
        + [("description", t) for t in DESCRIPTIONS]
    )
