// s3grid: front-end adjustments to ipydatagrid 1.4, applied per grid.
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

// Fourth, the editor as a daily tool: Ctrl+V pastes a spreadsheet's range and Ctrl+D
// fills down, both done by the kernel (which checks every value against the schema and
// makes the whole paste one undo step); Ctrl+C copies with cells quoted as spreadsheets
// quote them, so a copy pastes back identically; columns get the cell editor that fits
// them (a dropdown of a dictionary column's categories, of true/false for a boolean,
// a date picker for a date); a read-only cell opens no editor; and the kernel can show
// and select a cell (Find).

// Fifth, moving around: a new window of rows (a page, a sort) goes into the data model
// in place, each painted region is copied to the screen once (not cell by cell), and
// the columns widen to fill a grid wider than they are. Each is explained where it is
// done (onData, blitOncePerRegion, fillWidth).

const STATUS = "\u2691";

function quoted(text) {
  // as Excel and Google Sheets write a cell holding a tab, a newline or a quote
  return /[\t\n\r"]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

async function luminoGrids(grid) {
  // ipydatagrid's views hold a FeatherGrid whose `grid` is Lumino's DataGrid
  const views = await Promise.all(Object.values(grid.views || {}));
  return views
    .filter((view) => view && view.grid && view.grid.grid)
    .map((view) => ({ el: view.el, dataGrid: view.grid.grid }));
}

function blitOncePerRegion(dataGrid) {
  // Lumino 2 paints each cell into an off-screen buffer and copies (blits) every cell
  // to the screen on its own. Drawing from a canvas snapshots the whole buffer each
  // time, so a paint of a few hundred cells copies the buffer a few hundred times: most
  // of a page flip's paint where the canvas is not on a GPU. The cells of one region
  // are contiguous and nothing else draws on the screen in between, so one blit of
  // their bounding box copies the same pixels.
  const drawCells = dataGrid._drawCells;
  if (typeof drawCells !== "function" || typeof dataGrid._blitContent !== "function") {
    return; // not the Lumino this was written for: leave its paint alone
  }
  dataGrid._drawCells = function (rgn) {
    const blit = this._blitContent;
    let box = null;
    this._blitContent = (source, x, y, w, h, tx, ty) => {
      if (source !== this._buffer || x !== tx || y !== ty) {
        blit.call(this, source, x, y, w, h, tx, ty);
        return;
      }
      box = box
        ? {
            x1: Math.min(box.x1, x), y1: Math.min(box.y1, y),
            x2: Math.max(box.x2, x + w), y2: Math.max(box.y2, y + h),
          }
        : { x1: x, y1: y, x2: x + w, y2: y + h };
    };
    try {
      drawCells.call(this, rgn);
    } finally {
      delete this._blitContent; // the prototype's again
      if (box && box.x2 > box.x1 && box.y2 > box.y1) {
        const { x1, y1, x2, y2 } = box;
        blit.call(this, this._buffer, x1, y1, x2 - x1, y2 - y1, x1, y1);
      }
    }
  };
}

function fillWidth(dataGrid, grid) {
  // The kernel sizes each column to its header and values (the grid's column_widths).
  // Where the grid is wider than those add up to, every column widens in proportion,
  // so the grid has no empty band on its right; recomputed from the kernel's sizes
  // whenever the grid's width or the sizes change. The widths used are written on the
  // grid's element (data-s3grid-widths) for tests and tools that point at cells.
  const dataModel = dataGrid.dataModel;
  if (!dataModel || typeof dataModel.columnIndexToName !== "function") {
    return;
  }
  const sized = grid.get("column_widths") || {};
  const count = dataGrid.columnCount("body");
  const natural = [];
  for (let i = 0; i < count; i++) {
    const size = sized[dataModel.columnIndexToName(i, "body")];
    natural.push(typeof size === "number" ? size : dataGrid.defaultSizes.columnWidth);
  }
  const total = natural.reduce((a, b) => a + b, 0);
  const room = dataGrid.pageWidth;
  const scale = total > 0 && room > total ? room / total : 1;
  const widths = natural.map((size) => Math.floor(size * scale));
  widths.forEach((size, i) => {
    if (dataGrid.columnSize("body", i) !== size) {
      dataGrid.resizeColumn("body", i, size);
    }
  });
  dataGrid.node.setAttribute("data-s3grid-widths", JSON.stringify(widths));
}

function patchDataGrid(dataGrid, model, grid) {
  if (dataGrid.__s3gridPatched) {
    fillWidth(dataGrid, grid);
    return;
  }
  dataGrid.__s3gridPatched = true;
  if (typeof ResizeObserver === "function" && dataGrid.viewport) {
    let pending = false;
    new ResizeObserver(() => {
      if (!pending) {
        pending = true;
        requestAnimationFrame(() => {
          pending = false;
          fillWidth(dataGrid, grid);
        });
      }
    }).observe(dataGrid.viewport.node);
  }
  dataGrid.copyConfig = {
    ...dataGrid.copyConfig,
    format: (args) => quoted(args.value === null || args.value === undefined ? "" : String(args.value)),
  };
  blitOncePerRegion(dataGrid);
  const controller = dataGrid.editorController;
  if (controller && typeof controller.edit === "function") {
    const edit = controller.edit.bind(controller);
    controller.edit = (cell, options) => {
      const dataModel = cell.grid.dataModel;
      const name = dataModel.metadata("body", cell.row, cell.column)["name"];
      const readOnly = model.get("read_only") || [];
      const isNew = dataModel.data("body", cell.row, 0) === "new";
      // (the ⚑ cell opens, to be read; the kernel refuses an edit of it)
      if (readOnly.includes(name) && !isNew) {
        model.send({ event: "read-only", column: name });
        return false;
      }
      return edit(cell, options);
    };
  }
}

function patchDataModel(dataModel, sendTransform, model) {
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
  const metadata = dataModel.metadata.bind(dataModel);
  dataModel.metadata = function (region, row, column) {
    const found = metadata(region, row, column);
    if (region !== "body" || !found) {
      return found;
    }
    const editor = (model.get("editors") || {})[found["name"]];
    return editor ? { ...found, ...editor } : found;
  };
  if (typeof dataModel.addTransform === "function") {
    dataModel.addTransform = function (transform) {
      sendTransform(transform); // the kernel sorts or filters the whole master
    };
  }
  dataModel.__s3gridPatched = true;
  return true;
}

function sameColumns(dataModel, data) {
  const before = dataModel && dataModel.__s3gridPatched && dataModel._dataset;
  const now = data && data.schema;
  return Boolean(before && before.schema && now) &&
    JSON.stringify(before.schema.fields) === JSON.stringify(now.fields) &&
    JSON.stringify(before.schema.primaryKey) === JSON.stringify(now.primaryKey);
}

function selectionOf(grid) {
  const selection = grid.selectionModel;
  const current = selection && selection.currentSelection();
  if (!current) {
    return null;
  }
  return {
    r1: Math.min(current.r1, current.r2),
    r2: Math.max(current.r1, current.r2),
    c1: Math.min(current.c1, current.c2),
    c2: Math.max(current.c1, current.c2),
    row: selection.cursorRow,
    column: selection.cursorColumn,
  };
}

export default {
  async initialize({ model }) {
    const grid = await model.widget_manager.get_model(model.get("grid_id"));
    // ipydatagrid builds a new data model whenever the kernel sends a new window
    const sendTransform = (transform) =>
      model.send({ event: "header-transform", transform: transform });
    const onDataModel = () => patchDataModel(grid.data_model, sendTransform, model);
    grid.on("data-model-changed", onDataModel);

    // Keys and the clipboard reach the element that has the focus: the grid's, if it
    // is inside one of its views. The views are kept at hand (the check must be made
    // before the browser acts on Ctrl+D) and looked up again when the focus moves: the
    // notebook may render the grid again.
    let known = [];
    const refresh = async () => {
      known = await luminoGrids(grid);
      known.forEach(({ dataGrid }) => patchDataGrid(dataGrid, model, grid));
    };
    const inGrid = (target) => {
      if (target && ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)) {
        return null; // a cell editor's own input takes keys and pastes
      }
      const found = known.find(({ el }) => el && el.contains(target));
      return found ? found.dataGrid : null;
    };
    const onPaste = (event) => {
      const dataGrid = inGrid(event.target);
      const selection = selectionOf(grid);
      if (!dataGrid || !selection) {
        return;
      }
      event.preventDefault();
      const text = event.clipboardData ? event.clipboardData.getData("text/plain") : "";
      model.send({ event: "paste", text: text, ...selection });
    };
    const onKey = (event) => {
      const accel = (event.ctrlKey || event.metaKey) && !event.altKey;
      const key = (event.key || "").toLowerCase();
      if (accel && key === "v" && inGrid(event.target)) {
        // Lumino's key handler would open the cell editor and the paste would land in
        // it: the key goes no further, and the browser's paste event comes here
        event.stopPropagation();
        return;
      }
      const copyFrom = accel && key === "c" ? inGrid(event.target) : null;
      if (copyFrom) {
        // the same handler opens the editor on an editable grid's Ctrl+C too, before
        // it would copy: the copy is made here instead
        event.preventDefault();
        event.stopPropagation();
        copyFrom.copyToClipboard();
        return;
      }
      const fill = accel && key === "d";
      const dataGrid = fill ? inGrid(event.target) : null;
      const selection = dataGrid ? selectionOf(grid) : null;
      if (!selection) {
        return;
      }
      event.preventDefault(); // not the browser's bookmark
      event.stopPropagation(); // nor JupyterLab's shortcut
      model.send({ event: "fill-down", ...selection });
    };
    // A new window of rows (a page, a sort, a filter, a block edit). ipydatagrid
    // answers a new `_data` with a new data model, and Lumino then forgets every
    // column's width (a repaint per column to set it again) and repaints the whole grid
    // several times. While the columns stay the same, the rows go into the data model in
    // place: one repaint, and the widths, the patches, the scroll position and the
    // selection stay (the kernel says when the rows are another window: top, no
    // selection). Other columns (another master) take ipydatagrid's own way.
    let newWindow = false;
    const onData = async () => {
      const dataModel = grid.data_model;
      const data = grid.get("_data");
      if (!sameColumns(dataModel, data)) {
        grid.updateData();
        return;
      }
      dataModel.updateDataset({ datasource: data });
      if (newWindow) {
        newWindow = false;
        await refresh();
        known.forEach(({ dataGrid }) => {
          dataGrid.scrollTo(0, 0);
          if (dataGrid.selectionModel) {
            dataGrid.selectionModel.clear();
          }
        });
      }
    };
    grid.off("change:_data"); // ipydatagrid's updateData: called above when needed
    grid.on("change:_data", onData);
    // after ipydatagrid's view has set the kernel's sizes (its handler may run later)
    const refit = () => requestAnimationFrame(refresh);
    grid.on("change:column_widths", refit);
    const onMessage = async (message) => {
      if (message && message.event === "new-window") {
        newWindow = true;
      }
      if (message && message.event === "show-cell") {
        await refresh();
        for (const { dataGrid } of known) {
          dataGrid.scrollToCell(message.row, message.column);
          if (dataGrid.selectionModel) {
            dataGrid.selectionModel.select({
              r1: message.row, c1: message.column, r2: message.row, c2: message.column,
              cursorRow: message.row, cursorColumn: message.column, clear: "all",
            });
          }
        }
      }
    };
    document.addEventListener("paste", onPaste, true);
    document.addEventListener("keydown", onKey, true);
    document.addEventListener("focusin", refresh, true);
    grid.on("data-model-changed", refresh);
    model.on("msg:custom", onMessage);
    // the grid's view may render after this: look until it has (to size its columns)
    const lookUntil = Date.now() + 120000;
    const look = async () => {
      await refresh();
      if (!known.length && Date.now() < lookUntil) {
        setTimeout(look, 250);
      }
    };
    look();
    // tell the kernel: it then pushes the ⚑ flag with each edit (one cell's repaint)
    model.set("patched", onDataModel());
    model.save_changes();
    return () => {
      grid.off("change:_data", onData);
      grid.off("change:column_widths", refit);
      grid.on("change:_data", grid.updateData, grid);
      grid.off("data-model-changed", onDataModel);
      document.removeEventListener("paste", onPaste, true);
      document.removeEventListener("keydown", onKey, true);
      document.removeEventListener("focusin", refresh, true);
      grid.off("data-model-changed", refresh);
      model.off("msg:custom", onMessage);
    };
  },
};
