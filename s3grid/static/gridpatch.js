// s3grid: one front-end adjustment to ipydatagrid 1.4, applied per grid.
//
// Why: every cell edit (typed in the browser, or set by the kernel) reaches
// ViewBasedJSONModel.updateCellValue, which writes the value and then rebuilds the
// current view from the whole dataset (`this.currentView = createView(...)`). That
// emits 'model-reset': the grid re-measures and repaints every visible cell, and the
// model re-sends the visible row indices to the kernel. Without a GPU this blocks the
// browser for ~350 ms per edit whatever the size of the data.
//
// The rebuild only matters when a front-end sort or filter is active (the edit can move
// or hide the row). With none, the view shares the dataset's column arrays, so the new
// value is already visible and the 'cells-changed' that setData emits next repaints
// just that cell. So: skip the rebuild when no front-end transform is active, and keep
// ipydatagrid's own behaviour otherwise.

// Second: the header menu's Sort and Filter. ipydatagrid applies them to the rows in
// the browser (one page of the editor's window), so "Sort descending" on a page would
// look like the master sorted. The editor sorts and filters the whole master in the
// kernel: the menu's transform goes there instead, and the browser applies none.
//
// Third: the status column (⚑) names the edited cells of its row, and each cell's
// renderer reads it to mark itself. When the kernel sets ⚑, the whole row repaints
// (one row, not the grid), so the cell just edited shows its mark.

const STATUS = "\u2691";

function patchDataModel(dataModel, sendTransform) {
  if (!dataModel || dataModel.__s3gridPatched) {
    return Boolean(dataModel);
  }
  const original = dataModel.updateCellValue;
  const expected =
    typeof original === "function" &&
    typeof dataModel.metadata === "function" &&
    dataModel._transformState &&
    dataModel._dataset &&
    dataModel.dataSync;
  if (!expected) {
    return false; // not the ipydatagrid this was written for: leave it alone
  }
  dataModel.updateCellValue = function (options) {
    const transforms = this._transformState.activeTransforms;
    if (options.region !== "body" || transforms.length > 0) {
      return original.call(this, options);
    }
    const columnName = this.metadata("body", 0, options.column)["name"];
    this._dataset.data[columnName][options.row] = options.value;
    if (columnName === STATUS) {
      this.emitChanged({
        type: "cells-changed",
        region: "body",
        row: options.row,
        column: 0,
        rowSpan: 1,
        columnSpan: this.columnCount("body"),
      });
    }
    // the kernel hears of the edit exactly as before ('cell-edit-event' -> 'cell-changed')
    this.dataSync.emit({
      type: "cell-edit-event",
      column: columnName,
      columnIndex: options.column,
      row: options.row,
      region: options.region,
      value: options.value,
    });
  };
  if (typeof dataModel.addTransform === "function") {
    dataModel.addTransform = function (transform) {
      sendTransform(transform); // the kernel sorts or filters the whole master
    };
  }
  dataModel.__s3gridPatched = true;
  return true;
}

export default {
  async initialize({ model }) {
    const grid = await model.widget_manager.get_model(model.get("grid_id"));
    // ipydatagrid builds a new data model whenever the kernel sends a new window
    const sendTransform = (transform) =>
      model.send({ event: "header-transform", transform: transform });
    const onDataModel = () => patchDataModel(grid.data_model, sendTransform);
    grid.on("data-model-changed", onDataModel);
    // tell the kernel: it then pushes the ⚑ flag with each edit (one cell's repaint)
    model.set("patched", onDataModel());
    model.save_changes();
    return () => grid.off("data-model-changed", onDataModel);
  },
};
