"""The demo menu that ``orderflow seed`` and ``orderflow demo`` put into the store.

The ``stock`` here is also the level ``orderflow refill`` restores (the store
remembers each item's seed stock).
"""

from __future__ import annotations

from orderflow.models.documents import MenuItem

MENU_CURRENCY = "EUR"
"""ISO 4217 code of every menu price (prices are in its minor units). ``GET /api/v1/menu``
says it, so a page formats money for its reader's locale without guessing."""

DEMO_MENU: list[MenuItem] = [
    MenuItem(
        id="margherita",
        name="Margherita",
        description="San Marzano tomato, fior di latte, basil, olive oil.",
        category="pizza",
        price=950,
        stock=40,
    ),
    MenuItem(
        id="diavola",
        name="Diavola",
        description="Tomato, mozzarella, spicy salami, chili oil.",
        category="pizza",
        price=1150,
        stock=30,
    ),
    MenuItem(
        id="quattro-formaggi",
        name="Quattro Formaggi",
        description="Mozzarella, gorgonzola, fontina and parmigiano on a white base.",
        category="pizza",
        price=1250,
        stock=25,
    ),
    MenuItem(
        id="funghi",
        name="Funghi",
        description="Tomato, mozzarella, roasted mushrooms, thyme.",
        category="pizza",
        price=1090,
        stock=25,
    ),
    MenuItem(
        id="spaghetti-carbonara",
        name="Spaghetti Carbonara",
        description="Guanciale, egg yolk, pecorino romano, black pepper.",
        category="pasta",
        price=1290,
        stock=20,
    ),
    MenuItem(
        id="penne-arrabbiata",
        name="Penne all'Arrabbiata",
        description="Penne in a garlicky tomato sauce with chili and parsley.",
        category="pasta",
        price=1050,
        stock=20,
    ),
    MenuItem(
        id="lasagne",
        name="Lasagne al Forno",
        description="Baked layers of fresh pasta, beef ragu and bechamel.",
        category="pasta",
        price=1390,
        stock=12,
    ),
    MenuItem(
        id="caesar-salad",
        name="Caesar Salad",
        description="Romaine, parmigiano, croutons, anchovy dressing.",
        category="salad",
        price=890,
        stock=15,
    ),
    MenuItem(
        id="caprese",
        name="Insalata Caprese",
        description="Buffalo mozzarella, heirloom tomatoes, basil, olive oil.",
        category="salad",
        price=950,
        stock=15,
    ),
    MenuItem(
        id="garlic-bread",
        name="Garlic Bread",
        description="Wood-fired focaccia with garlic butter and rosemary.",
        category="sides",
        price=450,
        stock=50,
    ),
    MenuItem(
        id="tiramisu",
        name="Tiramisu",
        description="Mascarpone, espresso-soaked savoiardi, cocoa.",
        category="dessert",
        price=650,
        stock=18,
    ),
    MenuItem(
        id="panna-cotta",
        name="Panna Cotta",
        description="Vanilla cream with a wild berry coulis.",
        category="dessert",
        price=590,
        stock=18,
    ),
    MenuItem(
        id="sparkling-water",
        name="Sparkling Water 0.5 l",
        description="San Pellegrino, chilled.",
        category="drinks",
        price=250,
        stock=100,
    ),
    MenuItem(
        id="lemonade",
        name="Homemade Lemonade",
        description="Fresh lemons, mint, a little cane sugar.",
        category="drinks",
        price=390,
        stock=60,
    ),
]
