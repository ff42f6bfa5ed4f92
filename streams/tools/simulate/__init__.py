"""``vitrine simulate``: a year of realistic orders, and publishing it through the pipeline.

- :mod:`.generator`: the orders (seasons, regions, promotions, baskets) and
  their ground truth, also drawn on by the offline evaluations;
- :mod:`.command`: lists the products, publishes the orders in time order
  through the worker, and waits for the windows.
"""
