"""The data layer: dataset adapters to one sample table, the synthetic set, splits, the decoded-image cache
and device-side batch transforms."""
