/** Absolute path of the folder holding the built dashboard (index.html and assets/). */
export declare const dashboardDir: string;
